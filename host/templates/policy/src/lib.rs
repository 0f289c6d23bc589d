//! A kafka-transit data-protection policy, from the example that `kafka-transit policy
//! new` writes: make it yours.
//!
//! It pseudonymises record keys: each key becomes its HMAC under a Vault transit key
//! (`vault:v1:...`). Records with the same key still go to the same partition and still
//! compact together, but the key itself (an e-mail address, a customer number) never
//! reaches the sink. Values and headers pass through, a header names this policy, and
//! records without a key pass through unchanged. One Vault request serves a whole batch.
//!
//! Configuration (`[policy.config]` in pipeline.toml): `key`, the transit key.

use kafka_transit_policy_sdk::transit;
use kafka_transit_policy_sdk::{
    configured_policy, parse_config, stamped, through_vault, OutputRecord, Prepared, SourceRecord,
    TransformResult,
};

/// `[policy.config]`. Unknown fields are refused, so a typo is not silently ignored.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The Vault transit key to HMAC with.
    key: String,
}

impl Config {
    /// An error names the field to fix; the host refuses to start with it.
    fn parse(json: &str) -> Result<Self, String> {
        let config: Config = parse_config(json)?;
        if config.key.is_empty() {
            return Err("policy.config.key: name the Vault transit key to HMAC with".into());
        }
        Ok(config)
    }
}

configured_policy!(HashKeys, Config::parse, hash_keys);

fn hash_keys(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault(
        batch,
        "vault hmac",
        // What each record sends to Vault, or why it does not.
        |record| match record.key.take() {
            Some(key) => Prepared::Item(key),
            None => Prepared::Forward,
        },
        // One batch call for every record of the batch.
        |keys| transit::hmac(&config.key, keys),
        // The record that goes to the sink, from the record and its HMAC.
        |record, hmac| OutputRecord {
            topic: None,
            key: Some(hmac.into_bytes()),
            value: record.value,
            headers: stamped(record.headers, env!("CARGO_PKG_NAME"), &config.key),
        },
    )
}

/// Native tests (`cargo test`): the SDK's stand-in host answers the transit calls, so
/// this is the policy's own logic, without Vault, Kafka or a wasm runtime.
#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::testing::{record, Host, Operation};
    use kafka_transit_policy_sdk::transit::TransitError;
    use kafka_transit_policy_sdk::{Failure, Policy, POLICY_HEADER};

    /// A stand-in host with the transit key, and the policy initialised against it.
    fn start() -> Host {
        let host = Host::install();
        host.create_key("customers");
        HashKeys::init(r#"{"key":"customers"}"#.into()).expect("a valid configuration");
        host
    }

    fn the_record(result: TransformResult) -> OutputRecord {
        let mut records = result.expect("the record was transformed");
        assert_eq!(records.len(), 1, "one record out for one record in");
        records.remove(0)
    }

    #[test]
    fn keys_become_pseudonyms_and_values_stay() {
        let host = start();
        let batch = vec![
            record("alice@example.com", "order 1"),
            record("bob@example.com", "order 2"),
            record("alice@example.com", "order 3"),
        ];
        let out: Vec<OutputRecord> = HashKeys::transform(batch)
            .into_iter()
            .map(the_record)
            .collect();

        let keys: Vec<String> = out
            .iter()
            .map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap())
            .collect();
        assert!(keys[0].starts_with("vault:v1:"), "{}", keys[0]);
        assert!(
            !keys[0].contains("alice"),
            "the key must not reach the sink"
        );
        assert_eq!(keys[0], keys[2], "same key, same pseudonym: same partition");
        assert_ne!(keys[0], keys[1]);
        assert_eq!(out[1].value.as_deref(), Some(&b"order 2"[..]));
        assert!(out[0].headers.iter().any(|h| h.key == POLICY_HEADER
            && h.value.as_deref() == Some(env!("CARGO_PKG_NAME").as_bytes())));
        assert_eq!(
            host.calls().len(),
            1,
            "one Vault request for the whole batch"
        );
        assert_eq!(host.calls()[0].operation, Operation::Hmac);
        assert_eq!(host.calls()[0].items, 3);
    }

    #[test]
    fn records_without_a_key_pass_through_without_asking_vault() {
        let host = start();
        let mut keyless = record("", "no key");
        keyless.key = None;
        let out = the_record(HashKeys::transform(vec![keyless]).remove(0));
        assert_eq!(out.key, None);
        assert_eq!(out.value.as_deref(), Some(&b"no key"[..]));
        assert!(host.calls().is_empty());
    }

    #[test]
    fn when_vault_is_down_records_are_retried_not_lost() {
        let host = start();
        host.fail_calls(TransitError::Unavailable("Vault is sealed".into()));
        let results = HashKeys::transform(vec![record("alice", "a"), record("bob", "b")]);
        for result in results {
            assert!(matches!(result, Err(Failure::Retryable(_))), "{result:?}");
        }
    }

    #[test]
    fn a_record_vault_refuses_fails_alone() {
        let host = start();
        host.fail_items(
            |key| key == b"bob",
            TransitError::InvalidInput("refused".into()),
        );
        let results = HashKeys::transform(vec![record("alice", "a"), record("bob", "b")]);
        assert!(results[0].is_ok());
        assert!(matches!(&results[1], Err(Failure::InvalidInput(_))));
    }

    #[test]
    fn a_bad_configuration_is_refused_naming_the_field() {
        let _host = Host::install();
        let error = HashKeys::init("{}".into()).unwrap_err();
        assert!(error.contains("key"), "{error}");
        let error = HashKeys::init(r#"{"key":"customers","kee":1}"#.into()).unwrap_err();
        assert!(error.contains("kee"), "{error}");
    }

    #[test]
    fn the_sdk_targets_this_crates_wit() {
        // wit/policy.wit is the host's contract (`kafka-transit policy wit`); the SDK's
        // bindings must have been generated from the same text.
        let wit = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/wit/policy.wit"));
        assert!(
            kafka_transit_policy_sdk::WIT == wit,
            "kafka-transit-policy-sdk targets another WIT than wit/policy.wit: use the SDK \
             of the kafka-transit release you run (or refresh wit/ with \
             `kafka-transit policy wit > wit/policy.wit` if the host is the newer one)"
        );
    }
}
