//! The Vault access a pipeline needs: each path, the capability on it, and why.
//!
//! Derived from the pipeline file alone (the built-in policy and its `[policy.config]`,
//! key templates, exactly-once, how the token is renewed), so that
//! `kafka-transit vault-policy` prints a least-privilege ACL policy ([`hcl`]) and `run`
//! checks its token against the same list before it reads a record ([`check`]): a
//! missing permission then stops the runner at start with the path to grant, where it
//! would otherwise pause the pipeline on every batch (Vault's 403 is retryable for a
//! policy: the grant may be added while it waits).
//!
//! The paths a built-in policy uses are written down here, per policy, and tested
//! against OpenBao (`host/tests/vault_policy.rs`): the printed policy lets the pipeline
//! run, and the pipeline refuses to start without any one of its paths. A policy of
//! your own (`policy.path`) calls transit operations kafka-transit cannot know, so only
//! the paths of the host itself are listed for it.

pub mod check;
pub mod hcl;

use crate::config::{DeliveryGuarantee, PipelineConfig};

/// What a path needs (Vault's capability names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    /// Vault's `create`: a POST to a path that does not exist yet (transit's `encrypt`
    /// creating a missing key).
    Create,
    Read,
    Update,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
        }
    }
}

/// One path of the ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The path, relative to the namespace; ends with `*` when it covers the keys a
    /// template may name.
    pub path: String,
    pub capability: Capability,
    /// Why the pipeline needs it, for the ACL's comments and for errors.
    pub reasons: Vec<String>,
    /// The key is named by each record (a header template: `allowed_keys` and globs).
    /// Such a path is not checked at start: a token may rightly hold only some of the
    /// keys records can name, and refuse the others record by record (Vault's 403
    /// dead-letters a record whose key the token may not use).
    pub per_record: bool,
}

/// Everything a pipeline needs from Vault.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub grants: Vec<Grant>,
    /// What the reader of the ACL should know (globs, a policy of one's own).
    pub notes: Vec<String>,
}

/// A transit operation, by its path below the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Encrypt,
    Decrypt,
    Rewrap,
    Hmac,
    DataKey,
}

impl Operation {
    fn path(self) -> &'static str {
        match self {
            Operation::Encrypt => "encrypt",
            Operation::Decrypt => "decrypt",
            Operation::Rewrap => "rewrap",
            Operation::Hmac => "hmac",
            Operation::DataKey => "datakey/plaintext",
        }
    }
}

/// Which configured key an operation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyOf {
    /// `policy.config.key` (a template).
    Policy,
    /// `policy.config.record_keys_key`.
    RecordKeys,
}

/// What the pipeline file cannot say about the token.
#[derive(Debug, Clone, Copy)]
pub struct Token {
    /// The runner renews it (a login, or a renewable token with a TTL).
    pub renewed: bool,
}

impl Access {
    /// The access `config` needs. Whether the token is renewed is known only once
    /// connected; the printed policy assumes it is.
    pub fn of(config: &PipelineConfig, token: Token) -> Access {
        let mut access = Access::default();
        access.add_policy(config);
        // Across clusters the positions in the offsets topic are signed; on one cluster
        // they are the source group's offsets, in the transaction.
        if config.pipeline.delivery == DeliveryGuarantee::ExactlyOnce && !config.one_cluster() {
            let key = &config.pipeline.offsets_key;
            let mount = &config.vault.mount;
            access.grant(
                format!("{mount}/datakey/plaintext/{key}"),
                Capability::Update,
                "exactly-once: sign the source positions (pipeline.offsets_key)",
            );
            access.grant(
                format!("{mount}/decrypt/{key}"),
                Capability::Update,
                "exactly-once: verify the source positions on restart (pipeline.offsets_key)",
            );
        }
        access.grant(
            "auth/token/lookup-self".into(),
            Capability::Read,
            "check the token at start and in the readiness probe",
        );
        if token.renewed {
            access.grant(
                "auth/token/renew-self".into(),
                Capability::Update,
                "renew the token before it expires",
            );
        }
        if config.vault.check_permissions {
            access.grant(
                "sys/capabilities-self".into(),
                Capability::Update,
                "check these permissions at start (vault.check_permissions)",
            );
        }
        access
    }

    fn grant(&mut self, path: String, capability: Capability, reason: &str) {
        self.grant_for(path, capability, reason, false);
    }

    fn grant_for(&mut self, path: String, capability: Capability, reason: &str, per_record: bool) {
        match self
            .grants
            .iter_mut()
            .find(|g| g.path == path && g.capability == capability)
        {
            Some(grant) => grant.reasons.push(reason.to_string()),
            None => self.grants.push(Grant {
                path,
                capability,
                reasons: vec![reason.to_string()],
                per_record,
            }),
        }
    }

    fn add_policy(&mut self, config: &PipelineConfig) {
        let Some(builtin) = config.policy.builtin.as_deref() else {
            self.notes.push(
                "policy.path is a policy of your own: kafka-transit cannot tell which transit \
                 operations it calls. Add a path per operation and key it uses, e.g. \
                 path \"<mount>/encrypt/<key>\" { capabilities = [\"update\"] } \
                 (datakey/plaintext for envelopes it seals, decrypt for those it opens)."
                    .into(),
            );
            return;
        };
        let options = &config.policy.config;
        let text = |name: &str| options.get(name).and_then(toml::Value::as_str);
        let record_keys = text("record_keys").unwrap_or("keep");
        let has_record_keys_key = text("record_keys_key").is_some();
        use {KeyOf::*, Operation::*};
        let mut needs: Vec<(Operation, KeyOf, &str)> = Vec::new();
        let protect_keys = |needs: &mut Vec<(Operation, KeyOf, &str)>| match record_keys {
            "encrypt" => needs.push((Encrypt, RecordKeys, "encrypt record keys")),
            "hmac" => needs.push((Hmac, RecordKeys, "HMAC record keys")),
            _ => {}
        };
        let open_keys = |needs: &mut Vec<(Operation, KeyOf, &str)>| {
            if has_record_keys_key {
                needs.push((Decrypt, RecordKeys, "decrypt encrypted record keys"));
            }
        };
        let rewrap_keys = |needs: &mut Vec<(Operation, KeyOf, &str)>| {
            if record_keys == "encrypt" {
                needs.push((Rewrap, RecordKeys, "rewrap encrypted record keys"));
            }
        };
        match builtin {
            "encrypt-value" => {
                needs.push((Encrypt, Policy, "encrypt values"));
                protect_keys(&mut needs);
            }
            "encrypt-fields" | "encrypt-schema-fields" => {
                needs.push((Encrypt, Policy, "encrypt fields"));
                protect_keys(&mut needs);
            }
            "envelope-seal" => {
                needs.push((DataKey, Policy, "generate envelope data keys"));
                protect_keys(&mut needs);
            }
            "decrypt-value" | "decrypt-fields" | "decrypt-schema-fields" => {
                needs.push((Decrypt, Policy, "decrypt values"));
                open_keys(&mut needs);
            }
            "envelope-open" => {
                needs.push((Decrypt, Policy, "unwrap envelope data keys"));
                open_keys(&mut needs);
            }
            "rewrap-value" | "rewrap-fields" | "rewrap-schema-fields" => {
                needs.push((Rewrap, Policy, "rewrap ciphertexts"));
                let again = "format 3 records: decrypted and encrypted again with their \
                             binding (transit/rewrap takes no associated data)";
                needs.push((Decrypt, Policy, again));
                needs.push((Encrypt, Policy, again));
                rewrap_keys(&mut needs);
            }
            "envelope-rewrap" => {
                needs.push((Rewrap, Policy, "rewrap envelope data keys"));
                if record_keys == "encrypt" {
                    needs.push((Rewrap, RecordKeys, "rewrap encrypted record keys"));
                    let resealed = "envelopes bound to a rewrapped record key: opened and \
                                    sealed again";
                    needs.push((Decrypt, Policy, resealed));
                    needs.push((DataKey, Policy, resealed));
                }
            }
            _ => {}
        }
        let mount = &config.vault.mount;
        if self.add_subject_keys(builtin, config) {
            // The subjects' keys are granted; record keys as for any policy.
            needs.retain(|(_, of, _)| matches!(of, KeyOf::RecordKeys));
        }
        let (keys, per_record) = policy_keys(config, &mut self.notes);
        for (operation, of, reason) in needs {
            let (names, per_record) = match of {
                KeyOf::Policy => (keys.clone(), per_record),
                KeyOf::RecordKeys => (
                    text("record_keys_key")
                        .map(|key| vec![key.to_string()])
                        .unwrap_or_default(),
                    false,
                ),
            };
            for name in names {
                let path = format!("{mount}/{}/{name}", operation.path());
                let reason = format!("{builtin}: {reason}");
                self.grant_for(path, Capability::Update, &reason, per_record);
            }
        }
    }
}

impl Access {
    /// The paths of a policy that seals or opens per data subject (docs/forgetting.md);
    /// `false` when the policy is not configured so.
    fn add_subject_keys(&mut self, builtin: &str, config: &PipelineConfig) -> bool {
        let options = &config.policy.config;
        let text = |name: &str| options.get(name).and_then(toml::Value::as_str);
        let Some(prefix) = text("subject_keys") else {
            return false;
        };
        let mount = &config.vault.mount;
        let subjects = format!("{mount}/{{}}/{prefix}*");
        let path = |operation: &str| subjects.replace("{}", operation);
        match (builtin, text("subject_hmac_key")) {
            ("envelope-seal", Some(hmac_key)) => {
                self.grant(
                    format!("{mount}/hmac/{hmac_key}"),
                    Capability::Update,
                    "envelope-seal: name each data subject's key (HMAC of its id)",
                );
                let reason = "envelope-seal: data keys under each data subject's key";
                self.grant_for(path("datakey/plaintext"), Capability::Update, reason, true);
                let reason = "envelope-seal: create a data subject's key on its first record \
                              (Vault's encrypt creates a missing key)";
                self.grant_for(path("encrypt"), Capability::Create, reason, true);
                self.grant_for(path("encrypt"), Capability::Update, reason, true);
            }
            ("envelope-open", _) => {
                let reason = "envelope-open: unwrap data keys under each data subject's key";
                self.grant_for(path("decrypt"), Capability::Update, reason, true);
            }
            _ => return false,
        }
        self.notes.push(format!(
            "Each data subject has a key of its own, named {prefix}<pseudonym>: the paths end \
             in \"{prefix}*\". `kafka-transit forget` needs more than this token: update on \
             {mount}/hmac/<subject_hmac_key>, and read, update and delete on \
             {mount}/keys/{prefix}* (which covers each key's /config; docs/forgetting.md)."
        ));
        true
    }
}

/// The key names `policy.config.key` may give, as ACL paths: exact names, or
/// `prefix*` where a template may name keys no one can list beforehand; and whether
/// they depend on the record (more than its topic).
fn policy_keys(config: &PipelineConfig, notes: &mut Vec<String>) -> (Vec<String>, bool) {
    let options = &config.policy.config;
    let Some(key) = options.get("key").and_then(toml::Value::as_str) else {
        return (Vec::new(), false);
    };
    let Ok(template) = kafka_transit_names::Template::parse(key) else {
        return (Vec::new(), false);
    };
    if let Some(name) = template.literal() {
        return (vec![name.to_string()], false);
    }
    let allowed: Vec<String> = options
        .get("allowed_keys")
        .and_then(toml::Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !allowed.is_empty() {
        return (allowed, true);
    }
    let topics_only = template
        .fields()
        .all(|field| *field == kafka_transit_names::Field::Topic);
    let listed = config.source.topics.iter().all(|t| !t.starts_with('^'));
    if topics_only && listed {
        let rendered: Option<Vec<String>> = config
            .source
            .topics
            .iter()
            .map(|topic| {
                template
                    .render(&TopicOnly(topic))
                    .ok()
                    .map(|name| name.into_owned())
            })
            .collect();
        if let Some(mut rendered) = rendered {
            rendered.dedup();
            return (rendered, false);
        }
    }
    let prefix = key.split('{').next().unwrap_or_default();
    notes.push(format!(
        "policy.config.key = \"{key}\" names a key per record, so the paths end in \
         \"{prefix}*\": every key whose name starts that way. Narrow them with \
         policy.config.allowed_keys, which the policy enforces too."
    ));
    (vec![format!("{prefix}*")], true)
}

/// A record that is only its topic: what a `{topic}` template reads.
struct TopicOnly<'a>(&'a str);

impl kafka_transit_names::Record for TopicOnly<'_> {
    fn topic(&self) -> &str {
        self.0
    }
    fn header(&self, _: &str) -> Option<Option<&[u8]>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(policy: &str, extra: &str) -> PipelineConfig {
        let text = format!(
            r#"
[source]
bootstrap_servers = "localhost:9092"
topics = ["customers", "orders.raw"]
group_id = "g"
[sink]
bootstrap_servers = "localhost:9093"
topic = "{{topic}}.protected"
[vault]
address = "http://127.0.0.1:8200"
token_env = "VAULT_TOKEN"
[errors]
on_failure = "stop"
[policy]
{policy}
{extra}
"#
        );
        PipelineConfig::parse(&text).expect("config")
    }

    /// The `[schema_registry]` table the policies of schema'd records need.
    fn registry_for(builtin: &str) -> &'static str {
        if builtin.ends_with("-schema-fields") {
            "\n[schema_registry]\nurl = \"http://127.0.0.1:8081\""
        } else {
            ""
        }
    }

    fn paths(access: &Access) -> Vec<String> {
        access
            .grants
            .iter()
            .map(|g| format!("{} {}", g.capability.as_str(), g.path))
            .collect()
    }

    const TOKEN: Token = Token { renewed: true };

    #[test]
    fn per_subject_policies_name_the_subjects_keys_by_their_prefix() {
        let seal = Access::of(
            &config(
                "builtin = \"envelope-seal\"",
                "[policy.config]\nsubject = \"{key}\"\nsubject_keys = \"customers-\"\n\
                 subject_hmac_key = \"subject-ids\"\nrecord_keys = \"encrypt\"\n\
                 record_keys_key = \"customer-ids\"\n[forget]",
            ),
            TOKEN,
        );
        let got = paths(&seal);
        for want in [
            "update transit/hmac/subject-ids",
            "update transit/datakey/plaintext/customers-*",
            "create transit/encrypt/customers-*",
            "update transit/encrypt/customers-*",
            "update transit/encrypt/customer-ids",
        ] {
            assert!(got.contains(&want.to_string()), "{want}: {got:?}");
        }
        assert!(
            !got.iter().any(|p| p.contains("/keys/")),
            "forget's, not the runner's"
        );
        // One stanza per path, with both capabilities.
        let hcl = hcl::render(
            &seal,
            &hcl::Heading {
                file: "seal.toml",
                policy: "envelope-seal",
                namespace: None,
            },
        );
        assert!(
            hcl.contains("path \"transit/encrypt/customers-*\" {\n  capabilities = [\"create\", \"update\"]\n}"),
            "{hcl}"
        );
        assert_eq!(
            hcl.matches("transit/encrypt/customers-*").count(),
            1,
            "{hcl}"
        );
        let open = Access::of(
            &config(
                "builtin = \"envelope-open\"",
                "[policy.config]\nsubject_keys = \"customers-\"\n\
                 record_keys_key = \"customer-ids\"\n[forget]",
            ),
            TOKEN,
        );
        assert!(paths(&open).contains(&"update transit/decrypt/customers-*".to_string()));
        assert!(paths(&open).contains(&"update transit/decrypt/customer-ids".to_string()));
    }

    #[test]
    fn each_builtin_names_its_operations() {
        let cases = [
            ("encrypt-value", vec!["transit/encrypt/k"]),
            ("encrypt-fields", vec!["transit/encrypt/k"]),
            ("envelope-seal", vec!["transit/datakey/plaintext/k"]),
            ("decrypt-value", vec!["transit/decrypt/k"]),
            ("decrypt-fields", vec!["transit/decrypt/k"]),
            ("encrypt-schema-fields", vec!["transit/encrypt/k"]),
            ("decrypt-schema-fields", vec!["transit/decrypt/k"]),
            ("envelope-open", vec!["transit/decrypt/k"]),
            (
                "rewrap-value",
                vec!["transit/rewrap/k", "transit/decrypt/k", "transit/encrypt/k"],
            ),
            (
                "rewrap-fields",
                vec!["transit/rewrap/k", "transit/decrypt/k", "transit/encrypt/k"],
            ),
            (
                "rewrap-schema-fields",
                vec!["transit/rewrap/k", "transit/decrypt/k", "transit/encrypt/k"],
            ),
            ("envelope-rewrap", vec!["transit/rewrap/k"]),
            ("passthrough", vec![]),
        ];
        for (builtin, transit) in cases {
            let key = if builtin == "passthrough" {
                ""
            } else {
                "key = \"k\""
            };
            let access = Access::of(
                &config(
                    &format!("builtin = \"{builtin}\""),
                    &format!("[policy.config]\n{key}{}", registry_for(builtin)),
                ),
                TOKEN,
            );
            let mut want: Vec<String> = transit.iter().map(|p| format!("update {p}")).collect();
            want.extend([
                "read auth/token/lookup-self".to_string(),
                "update auth/token/renew-self".to_string(),
                "update sys/capabilities-self".to_string(),
            ]);
            assert_eq!(paths(&access), want, "{builtin}");
            assert!(access.notes.is_empty(), "{builtin}: {:?}", access.notes);
        }
    }

    #[test]
    fn record_keys_add_the_record_keys_key() {
        let seal = config(
            "builtin = \"envelope-seal\"",
            "[policy.config]\nkey = \"k\"\nrecord_keys = \"encrypt\"\nrecord_keys_key = \"rk\"",
        );
        assert!(paths(&Access::of(&seal, TOKEN)).contains(&"update transit/encrypt/rk".into()));
        let hmac = config(
            "builtin = \"encrypt-value\"",
            "[policy.config]\nkey = \"k\"\nrecord_keys = \"hmac\"\nrecord_keys_key = \"rk\"",
        );
        assert!(paths(&Access::of(&hmac, TOKEN)).contains(&"update transit/hmac/rk".into()));
        let open = config(
            "builtin = \"envelope-open\"",
            "[policy.config]\nkey = \"k\"\nrecord_keys_key = \"rk\"",
        );
        assert!(paths(&Access::of(&open, TOKEN)).contains(&"update transit/decrypt/rk".into()));
        let rewrap = config(
            "builtin = \"envelope-rewrap\"",
            "[policy.config]\nkey = \"k\"\nrecord_keys = \"encrypt\"\nrecord_keys_key = \"rk\"",
        );
        let rewrap = paths(&Access::of(&rewrap, TOKEN));
        for path in [
            "update transit/rewrap/k",
            "update transit/rewrap/rk",
            "update transit/decrypt/k",
            "update transit/datakey/plaintext/k",
        ] {
            assert!(rewrap.contains(&path.to_string()), "{path} in {rewrap:?}");
        }
    }

    #[test]
    fn templates_become_names_or_globs() {
        let per_topic = config(
            "builtin = \"encrypt-value\"",
            "[policy.config]\nkey = \"{topic|strip_suffix:.raw}\"",
        );
        let access = Access::of(&per_topic, TOKEN);
        assert_eq!(
            paths(&access)[..2],
            [
                "update transit/encrypt/customers",
                "update transit/encrypt/orders"
            ]
        );
        assert!(access.notes.is_empty());
        assert!(
            !access.grants[0].per_record,
            "a topic's key is checked at start"
        );

        let allowed = config(
            "builtin = \"encrypt-value\"",
            "[policy.config]\nkey = \"tenant-{header:tenant}\"\nallowed_keys = [\"tenant-a\", \"team-*\"]",
        );
        let access = Access::of(&allowed, TOKEN);
        assert_eq!(
            paths(&access)[..2],
            [
                "update transit/encrypt/tenant-a",
                "update transit/encrypt/team-*"
            ]
        );
        assert!(access.grants[0].per_record && access.grants[1].per_record);

        let open = config(
            "builtin = \"encrypt-value\"",
            "[policy.config]\nkey = \"tenant-{header:tenant}\"",
        );
        let access = Access::of(&open, TOKEN);
        assert_eq!(paths(&access)[0], "update transit/encrypt/tenant-*");
        assert!(access.grants[0].per_record);
        assert!(
            access.notes[0].contains("allowed_keys"),
            "{:?}",
            access.notes
        );
    }

    #[test]
    fn exactly_once_mount_and_token_options() {
        let eos = config(
            "builtin = \"envelope-seal\"",
            "[policy.config]\nkey = \"k\"\n[pipeline]\ndelivery = \"exactly-once\"\noffsets_key = \"ok\"",
        );
        let got = paths(&Access::of(&eos, Token { renewed: false }));
        assert!(got.contains(&"update transit/datakey/plaintext/ok".into()));
        assert!(got.contains(&"update transit/decrypt/ok".into()));
        assert!(!got.iter().any(|p| p.contains("renew-self")));

        let mut mounted = config(
            "builtin = \"encrypt-value\"",
            "[policy.config]\nkey = \"k\"",
        );
        mounted.vault.mount = "team/transit".into();
        mounted.vault.check_permissions = false;
        let got = paths(&Access::of(&mounted, TOKEN));
        assert_eq!(got[0], "update team/transit/encrypt/k");
        assert!(!got.iter().any(|p| p.contains("capabilities-self")));
    }

    #[test]
    fn a_policy_of_ones_own_gets_the_host_paths_and_a_note() {
        let own = config("path = \"policy.wasm\"", "[policy.config]\nkey = \"k\"");
        let access = Access::of(&own, TOKEN);
        assert_eq!(access.grants.len(), 3);
        assert!(access.notes[0].contains("policy of your own"));
    }
}
