//! `policy.config.allowed_keys`: the transit keys a record may name through a key
//! template. Vault's `transit/encrypt` creates a key that does not exist when the token
//! may `create` on that path, so without a list a producer that writes a header can make
//! the runner create (and use) keys nobody planned.

use kafka_transit_names::{check_name, MAX_NAME_LEN};

/// The keys records may name: exact names, and prefixes written `prefix*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedKeys {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Exact(String),
    /// Every name that starts with this text (and is a valid name).
    Prefix(String),
}

impl AllowedKeys {
    /// Validates `policy.config.allowed_keys`; an error names the entry to fix.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        if entries.is_empty() {
            return Err(
                "policy.config.allowed_keys: list at least one key name or prefix \
                        (\"tenant-*\"), or leave allowed_keys out"
                    .into(),
            );
        }
        let entries = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                parse_entry(entry).map_err(|why| {
                    format!("policy.config.allowed_keys[{i}]: {why} (got {entry:?})")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether records may name transit key `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.entries.iter().any(|entry| match entry {
            Entry::Exact(exact) => exact == name,
            Entry::Prefix(prefix) => name.starts_with(prefix.as_str()),
        })
    }
}

fn parse_entry(entry: &str) -> Result<Entry, String> {
    let Some(prefix) = entry.strip_suffix('*') else {
        if entry.contains('*') {
            return Err("'*' may only end an entry (\"tenant-*\")".into());
        }
        check_name(entry).map_err(|why| format!("not a valid key name: {why}"))?;
        return Ok(Entry::Exact(entry.to_string()));
    };
    if prefix.is_empty() {
        return Err(
            "\"*\" alone allows every key; leave allowed_keys out instead, or \
                    list a prefix (\"tenant-*\")"
                .into(),
        );
    }
    if prefix.contains('*') {
        return Err("'*' may only end an entry (\"tenant-*\")".into());
    }
    if prefix.len() >= MAX_NAME_LEN {
        return Err(format!(
            "a prefix must leave room for a name of at most {MAX_NAME_LEN} characters"
        ));
    }
    // A prefix is not a name itself ("." is a fine start), but only name characters can
    // ever match.
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only letters, digits, '.', '_' and '-' can be in a key name".into());
    }
    Ok(Entry::Prefix(prefix.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> Result<AllowedKeys, String> {
        AllowedKeys::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn exact_names_and_prefixes() {
        let list = allowed(&["tenant-acme", "eu.tenant-*"]).unwrap();
        assert!(list.allows("tenant-acme"));
        assert!(!list.allows("tenant-acme2"));
        assert!(!list.allows("tenant-ac"));
        assert!(list.allows("eu.tenant-globex"));
        assert!(list.allows("eu.tenant-"));
        assert!(!list.allows("us.tenant-globex"));
    }

    #[test]
    fn entries_are_validated_naming_the_entry() {
        for (entries, says) in [
            (&[][..], "policy.config.allowed_keys: list at least one"),
            (
                &["ok", "*"][..],
                "policy.config.allowed_keys[1]: \"*\" alone",
            ),
            (
                &["a*b"][..],
                "policy.config.allowed_keys[0]: '*' may only end",
            ),
            (&["a**"][..], "'*' may only end"),
            (&["../sys"][..], "not a valid key name"),
            (&[".."][..], "not a valid key name"),
            (&["a/*"][..], "only letters"),
            (&[""][..], "not a valid key name: it is empty"),
        ] {
            let error = allowed(entries).unwrap_err();
            assert!(error.contains(says), "{entries:?}: {error}");
        }
        let long = "a".repeat(MAX_NAME_LEN);
        assert!(allowed(&[&format!("{long}*")]).is_err());
        assert!(allowed(&[&long]).is_ok());
    }
}
