//! Kafka records written as text lines, so that seeds are readable and the fuzzer's
//! mutations stay records, and the records the host hands a policy made from them the way
//! `kafka::source_record` makes them from librdkafka's (host/src/kafka.rs).
//!
//! ```text
//! config 3 rotate         the first line may choose a configuration (and a rotation)
//! t:orders                the topic
//! k:alice                 the key (none without this line)
//! h:tenant=a              a header (`h:name` alone: a header without a value)
//! v:{"ssn":"123",         the value (none without this line: a tombstone); bytes as they are
//! +:"x":1}                more of the value, after a line feed
//! ---                     the next record
//! ```

use kafka_transit_policy_sdk::{Header, SourceRecord};

/// At most this many records and headers per record: bigger batches find nothing new.
const MAX_RECORDS: usize = 16;
const MAX_HEADERS: usize = 16;

/// A record as the broker holds it: bytes everywhere.
#[derive(Debug, Clone, Default)]
pub struct RawRecord {
    pub topic: Vec<u8>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// A fuzz input: which configuration, whether keys rotate, and the records.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub config: usize,
    pub rotate: bool,
    pub records: Vec<RawRecord>,
}

impl Input {
    pub fn parse(data: &[u8]) -> Input {
        let mut input = Input::default();
        let mut current: Option<RawRecord> = None;
        for line in data.split(|&b| b == b'\n') {
            if let Some(rest) = line.strip_prefix(b"config ") {
                let text = String::from_utf8_lossy(rest);
                let mut words = text.split_whitespace();
                input.config = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                input.rotate = words.any(|w| w == "rotate");
                continue;
            }
            if line == b"---" {
                input.records.extend(current.take());
                continue;
            }
            let Some((tag, rest)) = line.split_first_chunk::<2>() else {
                continue;
            };
            let record = current.get_or_insert_with(RawRecord::default);
            match tag {
                b"t:" => record.topic = rest.to_vec(),
                b"k:" => record.key = Some(rest.to_vec()),
                b"v:" => record.value = Some(rest.to_vec()),
                b"+:" => {
                    let value = record.value.get_or_insert_with(Vec::new);
                    value.push(b'\n');
                    value.extend_from_slice(rest);
                }
                b"h:" if record.headers.len() < MAX_HEADERS => {
                    record
                        .headers
                        .push(match rest.iter().position(|&b| b == b'=') {
                            Some(at) => (rest[..at].to_vec(), Some(rest[at + 1..].to_vec())),
                            None => (rest.to_vec(), None),
                        })
                }
                _ => {}
            }
        }
        input.records.extend(current);
        input.records.truncate(MAX_RECORDS);
        input
    }
}

/// What the host does with a record before any policy sees it.
#[derive(Debug, Clone)]
pub enum Admitted {
    /// Handed to the policy.
    Record(SourceRecord),
    /// Failed as invalid input in the policy's place (a header name that is not UTF-8).
    Refused(String),
}

/// Bytes up to the first NUL: librdkafka hands names over as C strings.
fn c_string(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

/// The record as `kafka::source_record` makes it: header names that are not UTF-8 refuse
/// the record (WIT strings are UTF-8), values and keys go as they are.
pub fn admit(raw: &RawRecord, offset: i64) -> Admitted {
    let mut headers = Vec::with_capacity(raw.headers.len());
    let mut refused = None;
    for (index, (name, value)) in raw.headers.iter().enumerate() {
        let name = c_string(name);
        let key = match std::str::from_utf8(name) {
            Ok(key) => key.to_string(),
            Err(_) => {
                refused.get_or_insert_with(|| {
                    format!(
                        "header {} of {} has a name that is not UTF-8",
                        index + 1,
                        raw.headers.len()
                    )
                });
                String::from_utf8_lossy(name).into_owned()
            }
        };
        headers.push(Header {
            key,
            value: value.clone(),
        });
    }
    if let Some(reason) = refused {
        return Admitted::Refused(reason);
    }
    Admitted::Record(SourceRecord {
        // Brokers hold topic names to `[a-zA-Z0-9._-]`; whatever arrives is text.
        topic: String::from_utf8_lossy(c_string(&raw.topic)).into_owned(),
        partition: 0,
        offset,
        timestamp: None,
        key: raw.key.clone(),
        value: raw.value.clone(),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_from_lines() {
        let input = Input::parse(
            b"config 3 rotate\nt:orders\nk:alice\nh:tenant=a\nh:flag\nv:{\"a\":\n+:1}\n---\nt:x\nh:\xff=1\n",
        );
        assert_eq!(input.config, 3);
        assert!(input.rotate);
        assert_eq!(input.records.len(), 2);
        let Admitted::Record(first) = admit(&input.records[0], 0) else {
            panic!("admitted")
        };
        assert_eq!(first.value.as_deref(), Some(&b"{\"a\":\n1}"[..]));
        assert_eq!(first.headers[1].value, None);
        assert!(matches!(admit(&input.records[1], 1), Admitted::Refused(_)));
    }
}
