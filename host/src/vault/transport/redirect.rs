//! Where a 307/308 from Vault leads.

use reqwest::Url;

/// Where a 307 points; never from https to http.
pub(crate) fn target(current: &Url, location: Option<&str>) -> Result<Url, String> {
    let loc = location.ok_or("Vault answered a redirect without a Location header")?;
    let next = current
        .join(loc)
        .map_err(|e| format!("Vault redirected to an invalid Location ({e})"))?;
    if current.scheme() == "https" && next.scheme() != "https" {
        return Err(format!(
            "Vault redirected from https to {}://{}; refusing to downgrade (point vault.address at the active node)",
            next.scheme(),
            next.host_str().unwrap_or("")
        ));
    }
    if next.scheme() != "https" && next.scheme() != "http" {
        return Err(format!(
            "Vault redirected to unsupported scheme {}",
            next.scheme()
        ));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects() {
        let http: Url = "http://a:8200/v1/transit/encrypt/k".parse().unwrap();
        let https: Url = "https://a:8200/v1/transit/encrypt/k".parse().unwrap();
        assert_eq!(
            target(&http, Some("http://b:8200/v1/transit/encrypt/k"))
                .unwrap()
                .as_str(),
            "http://b:8200/v1/transit/encrypt/k"
        );
        assert_eq!(
            target(&https, Some("/v1/x")).unwrap().as_str(),
            "https://a:8200/v1/x"
        );
        assert!(target(&https, Some("http://b:8200/v1/x")).is_err());
        assert!(target(&http, None).is_err());
    }
}
