//! Encrypts each record's value with Vault transit. The value becomes the UTF-8 text
//! `vault:v<N>:<base64>`, exactly Vault's ciphertext, so any Vault client in any
//! language can decrypt it with `transit/decrypt` alone. Keys and existing headers stay
//! as they are; two headers name the policy and the key. Tombstones pass through
//! unchanged. One Vault batch request serves a whole batch.
//!
//! Config: `key` (required; a name or a template such as `"{topic}"` or
//! `"tenant-{header:tenant}"`), `context` or `context_from = "record-key"` (derived keys).

use kafka_transit_policy_sdk::transit::{self, EncryptItem};
use kafka_transit_policy_sdk::{
    configured_policy, stamped, through_vault_by_key, OutputRecord, SourceRecord, TransformResult,
    TransitKeyConfig,
};

configured_policy!(EncryptValue, TransitKeyConfig::parse, encrypt);

fn encrypt(config: &TransitKeyConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_by_key(
        batch,
        "vault encrypt",
        |record| {
            // A tombstone stays a tombstone.
            config.key.with_value(record, |plaintext, record| {
                let context = config.context_for(record.key.as_deref())?;
                Ok(EncryptItem { plaintext, context })
            })
        },
        transit::encrypt,
        |record, key, ciphertext| OutputRecord {
            topic: None,
            key: record.key,
            value: Some(ciphertext.into_bytes()),
            headers: stamped(record.headers, "encrypt-value", key),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::testing::{record, Host};
    use kafka_transit_policy_sdk::{Failure, Header, Policy};

    fn for_tenant(tenant: &str, value: &str) -> SourceRecord {
        let mut record = record("k", value);
        record.headers.push(Header {
            key: "tenant".into(),
            value: Some(tenant.as_bytes().to_vec()),
        });
        record
    }

    /// A record's failure that must be dead-lettered, naming the template but not the
    /// key it rendered (a header value).
    fn assert_dead_lettered_quietly(result: &TransformResult, tenant: &str) {
        match result {
            Err(Failure::InvalidInput(reason)) => {
                assert!(reason.contains("tenant-{header:tenant}"), "{reason}");
                assert!(!reason.contains(tenant), "{tenant:?} leaks: {reason}");
            }
            other => panic!("{tenant}: expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn a_tenant_whose_key_is_denied_or_missing_fails_alone_as_invalid_input() {
        let host = Host::install();
        host.create_key("tenant-acme");
        host.create_key("tenant-evil");
        host.deny_key("tenant-evil");
        EncryptValue::init(r#"{"key":"tenant-{header:tenant}"}"#.into()).unwrap();
        let results = EncryptValue::transform(vec![
            for_tenant("acme", "a1"),
            for_tenant("evil", "e1"),
            for_tenant("ghost", "g1"),
            for_tenant("acme", "a2"),
        ]);
        for ok in [&results[0], &results[3]] {
            let value = ok.as_ref().expect("acme's records go through")[0]
                .value
                .clone();
            assert!(value.unwrap().starts_with(b"vault:v1:"));
        }
        assert_dead_lettered_quietly(&results[1], "evil");
        assert_dead_lettered_quietly(&results[2], "ghost");
    }

    #[test]
    fn a_denied_fixed_key_waits_for_the_operator_and_a_missing_one_is_a_policy_error() {
        let host = Host::install();
        host.create_key("customers");
        host.deny_key("customers");
        EncryptValue::init(r#"{"key":"customers"}"#.into()).unwrap();
        let results = EncryptValue::transform(vec![record("k", "v")]);
        assert!(
            matches!(&results[0], Err(Failure::Retryable(m)) if m.contains("customers")),
            "{results:?}"
        );
        EncryptValue::init(r#"{"key":"nobody-made-me"}"#.into()).unwrap();
        let results = EncryptValue::transform(vec![record("k", "v")]);
        assert!(
            matches!(&results[0], Err(Failure::PolicyError(_))),
            "{results:?}"
        );
    }

    #[test]
    fn a_key_outside_allowed_keys_fails_before_any_vault_call() {
        let host = Host::install();
        host.create_key("tenant-acme");
        EncryptValue::init(
            r#"{"key":"tenant-{header:tenant}","allowed_keys":["tenant-acme"]}"#.into(),
        )
        .unwrap();
        let results =
            EncryptValue::transform(vec![for_tenant("acme", "a1"), for_tenant("mallory", "m1")]);
        assert!(results[0].is_ok());
        assert_dead_lettered_quietly(&results[1], "mallory");
        assert!(
            host.calls().iter().all(|call| call.key == "tenant-acme"),
            "{:?}",
            host.calls()
        );
        let error = EncryptValue::init(r#"{"key":"customers","allowed_keys":["tenant-*"]}"#.into())
            .unwrap_err();
        assert!(error.starts_with("policy.config.allowed_keys"), "{error}");
    }
}
