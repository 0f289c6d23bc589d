//! Where a 307/308 from Vault may lead: back to `vault.address`'s own origin only.
//!
//! Every request carries the token. A standby answers 307 to the active node's
//! `api_addr`, and anyone able to answer for `vault.address` can name any host: following
//! such a redirect would hand the token to that host. The same origin (scheme, host and
//! port) is fine, e.g. a load balancer that is also every node's `api_addr`.

use reqwest::Url;

use crate::vault::error::VaultError;

/// The URL to re-send the request to, or why not.
pub(crate) fn target(
    address: &Url,
    current: &Url,
    location: Option<&str>,
    path: &str,
) -> Result<Url, VaultError> {
    let protocol = |detail: String| VaultError::Protocol { detail };
    let loc = location
        .ok_or_else(|| protocol(format!("Vault redirected {path} without a Location header")))?;
    let next = current.join(loc).map_err(|e| {
        protocol(format!(
            "Vault redirected {path} to an invalid Location ({e})"
        ))
    })?;
    if next.origin() != address.origin() {
        // Only the Location's scheme, host and port: never its user info, path or query.
        let port = next
            .port_or_known_default()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        return Err(protocol(format!(
            "Vault redirected {path} to another host ({}://{}{port}); the token is sent to vault.address only, so the redirect was not followed: point vault.address at the active node or at a load balancer",
            next.scheme(),
            next.host_str().unwrap_or("")
        )));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    #[test]
    fn same_origin_only() {
        let address = url("https://vault.example:8200");
        let current = url("https://vault.example:8200/v1/transit/encrypt/k");
        let follow = |loc: &str| target(&address, &current, Some(loc), "transit/encrypt/k");
        assert_eq!(
            follow("/v1/x").unwrap().as_str(),
            "https://vault.example:8200/v1/x"
        );
        assert_eq!(
            follow("https://vault.example:8200/lb/v1/x")
                .unwrap()
                .as_str(),
            "https://vault.example:8200/lb/v1/x"
        );
        // The default port written out is the same origin.
        let plain = url("https://vault.example");
        assert!(target(
            &plain,
            &url("https://vault.example/v1/a"),
            Some("https://vault.example:443/v1/b"),
            "a"
        )
        .is_ok());

        for (loc, shown) in [
            (
                "https://other.example:8200/v1/x",
                "https://other.example:8200",
            ),
            (
                "https://vault.example:8201/v1/x",
                "https://vault.example:8201",
            ),
            (
                "http://vault.example:8200/v1/x",
                "http://vault.example:8200",
            ),
            (
                "https://user:pw@evil.example/v1/x?q=1",
                "https://evil.example:443",
            ),
        ] {
            let e = follow(loc).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, VaultError::Protocol { .. }), "{e:?}");
            assert!(msg.contains("another host") && msg.contains(shown), "{msg}");
            assert!(msg.contains("vault.address"), "{msg}");
            assert!(!msg.contains("pw") && !msg.contains("q=1"), "{msg}");
        }
        assert!(target(&address, &current, None, "p").is_err());
    }
}
