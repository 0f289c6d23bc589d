//! Secrets and trust roots that HTTP clients (Vault's, the Schema Registry's) read from
//! where the configuration names them: a token or password from an environment variable
//! or a file, a CA bundle from a file. Secrets are held in memory wiped on drop; errors
//! name the configuration field and what to change, never the secret.

use std::path::Path;

use zeroize::Zeroizing;

/// The trimmed value of environment variable `name`, which `field` names;
/// `alternative` is the other way to give it, for the error.
pub fn from_env(name: &str, field: &str, alternative: &str) -> Result<Zeroizing<String>, String> {
    match std::env::var(name) {
        Ok(value) => {
            let value = Zeroizing::new(value);
            let trimmed = value.trim();
            if trimmed.is_empty() {
                Err(format!(
                    "env var {name} (from {field}) is empty; set it or {alternative}"
                ))
            } else {
                Ok(Zeroizing::new(trimmed.to_string()))
            }
        }
        Err(std::env::VarError::NotPresent) => Err(format!(
            "env var {name} is not set; set it or {alternative} (named by {field})"
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "env var {name} (from {field}) is not valid UTF-8; fix its value"
        )),
    }
}

/// The trimmed content of the file at `path`, which `field` names.
pub fn from_file(path: &Path, field: &str) -> Result<Zeroizing<String>, String> {
    let raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {field} {}: {e}; make the file readable or fix the path",
            path.display()
        )
    })?);
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(format!(
            "{field} {} is empty; write the secret into it",
            path.display()
        ));
    }
    Ok(Zeroizing::new(trimmed.to_string()))
}

/// The certificates of the PEM bundle at `path` (named by `field`), to add to an HTTP
/// client's trusted roots; `server` names whose certificate they must have signed.
pub fn ca_bundle(
    path: &Path,
    field: &str,
    server: &str,
) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {field} {}: {e}; point it to a readable PEM bundle",
            path.display()
        )
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "{field} {} is not a valid PEM certificate bundle: {e}",
            path.display()
        )
    })?;
    if certs.is_empty() {
        return Err(format!(
            "{field} {} holds no PEM certificates; point it to the CA bundle that signed \
             {server}'s certificate",
            path.display()
        ));
    }
    Ok(certs)
}
