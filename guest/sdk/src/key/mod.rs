//! Which transit key protects a record: one fixed name, or a template resolved per
//! record (`"{topic}"`, `"tenant-{header:tenant}"`, `"{topic|strip_suffix:.raw}"`).
//! The language is the host's, from the `kafka-transit-names` crate; it is documented
//! in the README ("Topics, templates and keys").

use kafka_transit_names::{Record, Template};
use serde::{Deserialize, Deserializer};

use crate::{Failure, Prepared, SourceRecord};

/// `policy.config.key`: a transit key name or a template naming one per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(Template);

impl KeyName {
    /// Parses `policy.config.key`; the error names the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        Template::parse(text)
            .map(KeyName)
            .map_err(|e| format!("policy.config.key: {e}"))
    }

    /// The configured text, template or name.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// What a whole-value policy does first with each record: a tombstone is forwarded;
    /// otherwise the record's key is resolved and `item` makes the Vault item from the
    /// value (taken out of the record) and the rest of the record.
    pub fn with_value<I>(
        &self,
        record: &mut SourceRecord,
        item: impl FnOnce(Vec<u8>, &SourceRecord) -> Result<I, Failure>,
    ) -> Prepared<(String, I)> {
        if record.value.is_none() {
            return Prepared::Forward;
        }
        let key = match self.for_record(record) {
            Ok(key) => key,
            Err(failure) => return Prepared::Fail(failure),
        };
        let value = record.value.take().unwrap_or_default();
        match item(value, record) {
            Ok(item) => Prepared::Item((key, item)),
            Err(failure) => Prepared::Fail(failure),
        }
    }

    /// The key for `record`. A record the template cannot name a key for (a missing
    /// tenant header, say) is invalid input: it is dead-lettered, never protected under
    /// some other key.
    pub fn for_record(&self, record: &SourceRecord) -> Result<String, Failure> {
        self.0
            .render(record)
            .map(|name| name.into_owned())
            .map_err(|e| Failure::InvalidInput(format!("policy.config.key = \"{}\": {e}", self.0)))
    }
}

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Template::parse(&text)
            .map(KeyName)
            .map_err(|e| serde::de::Error::custom(format!("policy.config.key: {e}")))
    }
}

impl Record for SourceRecord {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn header(&self, name: &str) -> Option<Option<&[u8]>> {
        self.headers
            .iter()
            .rev()
            .find(|h| h.key == name)
            .map(|h| h.value.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::record;
    use crate::Header;

    #[test]
    fn a_header_names_the_key_and_its_absence_is_invalid_input() {
        let key = KeyName::parse("tenant-{header:tenant}").unwrap();
        let mut r = record("k", "v");
        r.headers.push(Header {
            key: "tenant".into(),
            value: Some(b"acme".to_vec()),
        });
        assert_eq!(key.for_record(&r).unwrap(), "tenant-acme");
        let missing = key.for_record(&record("k", "v")).unwrap_err();
        assert_eq!(
            missing,
            Failure::InvalidInput(
                "policy.config.key = \"tenant-{header:tenant}\": the record has no header \"tenant\""
                    .into()
            )
        );
        assert!(KeyName::parse("{tenant}")
            .unwrap_err()
            .starts_with("policy.config.key: "));
    }
}
