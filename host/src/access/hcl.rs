//! The access as a Vault ACL policy (HCL), each path with why it is there.

use std::fmt::Write;

use super::Access;

/// What the policy's opening comment says about the pipeline.
pub struct Heading<'a> {
    /// The pipeline file, as given on the command line.
    pub file: &'a str,
    /// `policy.builtin`, or the component's path.
    pub policy: &'a str,
    /// `vault.namespace`: the policy must be written there.
    pub namespace: Option<&'a str>,
}

pub fn render(access: &Access, heading: &Heading<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Vault ACL policy for the kafka-transit pipeline in {} (policy {}).",
        heading.file, heading.policy
    );
    let _ = writeln!(
        out,
        "# The least the runner's token needs: vault policy write kafka-transit policy.hcl"
    );
    if let Some(namespace) = heading.namespace {
        let _ = writeln!(
            out,
            "# Write it in namespace {namespace} (VAULT_NAMESPACE={namespace}): the paths are relative to it."
        );
    }
    for note in &access.notes {
        out.push_str("#\n");
        for line in wrap(note, 86) {
            let _ = writeln!(out, "# {line}");
        }
    }
    // One stanza per path, with every capability the grants on it need.
    let mut paths: Vec<&str> = Vec::new();
    for grant in &access.grants {
        if !paths.contains(&grant.path.as_str()) {
            paths.push(&grant.path);
        }
    }
    for path in paths {
        let grants: Vec<_> = access.grants.iter().filter(|g| g.path == path).collect();
        out.push('\n');
        let mut reasons: Vec<&str> = Vec::new();
        for reason in grants.iter().flat_map(|g| &g.reasons) {
            if !reasons.contains(&reason.as_str()) {
                reasons.push(reason);
                let _ = writeln!(out, "# {reason}");
            }
        }
        if grants.iter().any(|g| g.per_record) {
            let _ = writeln!(
                out,
                "# (a key records name: not checked when the runner starts)"
            );
        }
        let capabilities: Vec<String> = grants
            .iter()
            .map(|g| format!("\"{}\"", g.capability.as_str()))
            .collect();
        let _ = writeln!(
            out,
            "path \"{path}\" {{\n  capabilities = [{}]\n}}",
            capabilities.join(", ")
        );
    }
    out
}

/// `text` in lines of at most `width` characters, broken between words.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line at least");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::super::{Capability, Grant};
    use super::*;

    #[test]
    fn one_block_per_path_with_its_reasons() {
        let access = Access {
            grants: vec![Grant {
                path: "transit/encrypt/k".into(),
                capability: Capability::Update,
                reasons: vec!["encrypt values".into(), "more".into()],
                per_record: false,
            }],
            notes: vec!["a note ".repeat(20)],
        };
        let text = render(
            &access,
            &Heading {
                file: "p.toml",
                policy: "encrypt-value",
                namespace: Some("team-a"),
            },
        );
        assert!(text.contains("in p.toml (policy encrypt-value)"), "{text}");
        assert!(text.contains("namespace team-a"), "{text}");
        assert!(
            text.contains(
                "# encrypt values\n# more\npath \"transit/encrypt/k\" {\n  capabilities = [\"update\"]\n}\n"
            ),
            "{text}"
        );
        assert!(text.lines().all(|line| line.len() <= 100), "{text}");
    }
}
