//! The format 3 options of `[policy.config]` (docs/protected-records.md, "Options"),
//! taken out of a policy's configuration before the policy reads the rest, and checked
//! against what the policy is: errors name `policy.config.<field>` and say what to do.

use serde_json::{Map, Value};

use crate::envelope_format::record::{Compression, Flags, RecordKeys as KeyFlags};

/// What a policy does with protected records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `encrypt-value`, `envelope-seal`, `encrypt-fields`: writes format 3 when asked.
    Protect,
    /// `decrypt-value`, `envelope-open`, `decrypt-fields`: reads formats 1 to 3.
    Open,
    /// `rewrap-value`, `rewrap-fields`, `envelope-rewrap`: moves ciphertexts (and
    /// encrypted record keys) to the latest key version, keeping each record's format.
    Rewrap,
}

/// What a policy's ciphertexts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The whole value, as Vault's `vault:v...` text.
    Value,
    /// The whole value, as an envelope.
    Envelope,
    /// Selected fields of a JSON or schema'd (Avro, Protobuf, JSON Schema) record.
    Fields,
}

/// `record_keys`: what the record key is on the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordKeys {
    /// As it came.
    #[default]
    Keep,
    /// Vault convergent encryption under `record_keys_key`, the stream as context.
    Encrypt,
    /// Vault HMAC under `record_keys_key` of `stream ‖ 0x00 ‖ key`.
    Hmac,
}

/// `headers`: where the record's headers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Headers {
    #[default]
    Keep,
    /// Into the protected value (the frame), but `keep_headers` and `kafka-transit.*`.
    Seal,
}

/// What a ciphertext authenticates besides itself (`bind`, `require_binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Binding {
    pub stream: bool,
    pub key: bool,
}

impl Binding {
    pub fn any(self) -> bool {
        self.stream || self.key
    }

    /// Whether `flags` bind at least this.
    pub fn met_by(self, flags: Flags) -> bool {
        (!self.stream || flags.stream()) && (!self.key || flags.key())
    }

    /// `["stream", "key"]`, for messages.
    pub fn describe(self) -> String {
        let mut parts = Vec::new();
        if self.stream {
            parts.push("\"stream\"");
        }
        if self.key {
            parts.push("\"key\"");
        }
        format!("[{}]", parts.join(", "))
    }
}

/// The format 3 options of one policy, validated for its [`Role`] and [`Shape`]. With
/// none set, a protecting policy writes formats 1/2 exactly as before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionConfig {
    pub role: Role,
    pub shape: Shape,
    pub record_keys: RecordKeys,
    /// A transit key name: `record_keys`' key; needed to open records whose keys are
    /// encrypted, and to rewrap them.
    pub record_keys_key: Option<String>,
    pub headers: Headers,
    pub keep_headers: Vec<String>,
    pub bind: Binding,
    /// The stream name bound; `None`: the sink topic (protecting), the record's own
    /// topic (opening and rewrapping: they read what a protecting pipeline wrote).
    pub stream: Option<String>,
    pub compression: Compression,
    pub pad_to: u32,
    pub require_binding: Binding,
    /// Opening: pass HMAC'd record keys on as they are instead of refusing the record.
    pub keep_hmac_keys: bool,
}

/// The options this module takes out of `[policy.config]`.
pub const OPTIONS: &[&str] = &[
    "record_keys",
    "record_keys_key",
    "headers",
    "keep_headers",
    "bind",
    "stream",
    "compression",
    "pad_to",
    "require_binding",
    "keep_hmac_keys",
];

/// Largest `pad_to`: padding is for hiding lengths, not for filling Kafka's limits.
pub const MAX_PAD_TO: u32 = 16 * 1024 * 1024;

impl ProtectionConfig {
    /// No option set: formats 1/2.
    pub fn none(role: Role, shape: Shape) -> Self {
        ProtectionConfig {
            role,
            shape,
            record_keys: RecordKeys::Keep,
            record_keys_key: None,
            headers: Headers::Keep,
            keep_headers: Vec::new(),
            bind: Binding::default(),
            stream: None,
            compression: Compression::None,
            pad_to: 0,
            require_binding: Binding::default(),
            keep_hmac_keys: false,
        }
    }

    /// Takes the format 3 options out of `config` (a `[policy.config]` table) and checks
    /// them for a policy of this role and shape; the rest stays for the policy.
    pub fn take(config: &mut Map<String, Value>, role: Role, shape: Shape) -> Result<Self, String> {
        let mut parsed = ProtectionConfig::none(role, shape);
        for &option in OPTIONS {
            let Some(value) = config.remove(option) else {
                continue;
            };
            accepted(option, role, shape)?;
            parsed.set(option, value)?;
        }
        parsed.validated()
    }

    /// [`ProtectionConfig::take`] from JSON text, for a policy with no other options.
    pub fn parse(json: &str, role: Role, shape: Shape) -> Result<Self, String> {
        let mut config = config_table(json)?;
        let parsed = Self::take(&mut config, role, shape)?;
        if let Some(other) = config.keys().next() {
            return Err(format!("policy.config: unknown field `{other}`"));
        }
        Ok(parsed)
    }

    fn set(&mut self, option: &str, value: Value) -> Result<(), String> {
        let field = |why: String| format!("policy.config.{option}: {why}");
        match option {
            "record_keys" => {
                self.record_keys =
                    match text(option, &value)? {
                        "keep" => RecordKeys::Keep,
                        "encrypt" => RecordKeys::Encrypt,
                        "hmac" if self.role == Role::Rewrap => return Err(field(
                            "an HMAC cannot be rewrapped (it is one-way); a rewrap policy takes \
                             \"keep\" or \"encrypt\""
                                .into(),
                        )),
                        "hmac" => RecordKeys::Hmac,
                        other => return Err(one_of(option, other, &["keep", "encrypt", "hmac"])),
                    }
            }
            "record_keys_key" => {
                let name = text(option, &value)?;
                crate::envelope_format::check_key_name(name.as_bytes()).map_err(|why| {
                    field(format!(
                        "must be a transit key name ({why}); templates are not taken here: \
                         one key protects the record keys of the whole stream"
                    ))
                })?;
                self.record_keys_key = Some(name.to_string());
            }
            "headers" => {
                self.headers = match text(option, &value)? {
                    "keep" => Headers::Keep,
                    "seal" if self.shape == Shape::Fields => {
                        return Err(field(
                            "\"seal\" is for the whole-value policies (encrypt-value, \
                             envelope-seal): a field policy's value stays a record in its own \
                             format (JSON, Avro, Protobuf), which has no place for headers"
                                .into(),
                        ))
                    }
                    "seal" => Headers::Seal,
                    other => return Err(one_of(option, other, &["keep", "seal"])),
                }
            }
            "keep_headers" => {
                self.keep_headers = list(option, &value)?
                    .into_iter()
                    .map(str::to_string)
                    .collect();
            }
            "bind" | "require_binding" => {
                let mut binding = Binding::default();
                for part in list(option, &value)? {
                    match part {
                        "stream" => binding.stream = true,
                        "key" => binding.key = true,
                        other => return Err(one_of(option, other, &["stream", "key"])),
                    }
                }
                if option == "bind" {
                    self.bind = binding;
                } else {
                    self.require_binding = binding;
                }
            }
            "stream" => {
                let name = text(option, &value)?;
                kafka_transit_names::check_name(name).map_err(|why| {
                    field(format!(
                        "must be a stream name like a topic's: 1 to 249 of A-Z a-z 0-9 . _ - \
                         ({why})"
                    ))
                })?;
                self.stream = Some(name.to_string());
            }
            "compression" => {
                self.compression = match text(option, &value)? {
                    "none" => Compression::None,
                    "zstd" => Compression::Zstd,
                    "lz4" => Compression::Lz4,
                    other => return Err(one_of(option, other, &["none", "zstd", "lz4"])),
                }
            }
            "pad_to" => {
                self.pad_to = value
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|&n| n <= MAX_PAD_TO)
                    .ok_or_else(|| {
                        field(format!(
                            "must be a whole number of bytes from 0 (off) to {MAX_PAD_TO}"
                        ))
                    })?;
            }
            "keep_hmac_keys" => {
                self.keep_hmac_keys = value
                    .as_bool()
                    .ok_or_else(|| field("must be true or false".into()))?;
            }
            _ => unreachable!("only OPTIONS are set"),
        }
        Ok(())
    }

    /// The checks across options.
    fn validated(self) -> Result<Self, String> {
        let keyed = match self.role {
            Role::Protect => self.record_keys != RecordKeys::Keep,
            Role::Rewrap => self.record_keys == RecordKeys::Encrypt,
            Role::Open => true,
        };
        match (&self.record_keys_key, keyed) {
            (None, true) if self.role != Role::Open => {
                return Err(format!(
                    "policy.config.record_keys_key: required with record_keys = \"{}\": the \
                     transit key for record keys (for \"encrypt\", created with derived = true \
                     and convergent_encryption = true)",
                    if self.record_keys == RecordKeys::Hmac {
                        "hmac"
                    } else {
                        "encrypt"
                    }
                ))
            }
            (Some(_), false) => {
                return Err(
                    "policy.config.record_keys_key: has no effect unless record_keys = \
                     \"encrypt\" or \"hmac\"; set record_keys, or remove it"
                        .into(),
                )
            }
            _ => {}
        }
        if self.role == Role::Protect {
            if !self.keep_headers.is_empty() && self.headers != Headers::Seal {
                return Err(
                    "policy.config.keep_headers: names the headers that stay in clear when \
                     headers = \"seal\"; without it every header stays in clear"
                        .into(),
                );
            }
            if self.stream.is_some() && !self.bind.stream && self.record_keys == RecordKeys::Keep {
                return Err(
                    "policy.config.stream: names the stream that bind = [\"stream\"] and \
                     record_keys bind records to; with neither it has no effect"
                        .into(),
                );
            }
        }
        Ok(self)
    }

    /// Whether a protecting policy writes format 3 (any option set); `false` keeps
    /// formats 1/2 byte for byte.
    pub fn is_format3(&self) -> bool {
        self.record_keys != RecordKeys::Keep
            || self.headers == Headers::Seal
            || self.bind.any()
            || self.compression != Compression::None
            || self.pad_to > 0
    }

    /// The flags a protecting policy writes, without the compression and padding bits
    /// (the host sets those on envelopes).
    pub fn flags(&self) -> Flags {
        Flags::new(
            self.bind.stream,
            self.bind.key,
            self.headers == Headers::Seal,
            match self.record_keys {
                RecordKeys::Keep => KeyFlags::Kept,
                RecordKeys::Encrypt => KeyFlags::Encrypted,
                RecordKeys::Hmac => KeyFlags::Hmac,
            },
            Compression::None,
            false,
        )
    }

    /// The flags of the protection header a protecting policy writes: [`Self::flags`]
    /// with the envelope's compression and padding bits.
    pub fn header_flags(&self) -> Flags {
        self.flags().with_body(self.compression, self.pad_to > 0)
    }

    /// Whether a protecting policy needs each record's stream name.
    pub fn needs_stream(&self) -> bool {
        self.bind.stream || self.record_keys != RecordKeys::Keep
    }
}

/// Whether a policy of `role` and `shape` takes `option`, or why not.
fn accepted(option: &str, role: Role, shape: Shape) -> Result<(), String> {
    let body = matches!(option, "compression" | "pad_to");
    if body && shape != Shape::Envelope {
        return Err(format!(
            "policy.config.{option}: only envelope policies compress and pad (a vault: \
             value's ciphertext is Vault's); use envelope-seal for {option}"
        ));
    }
    let takes = match role {
        Role::Protect => !matches!(option, "require_binding" | "keep_hmac_keys"),
        Role::Open => matches!(
            option,
            "stream" | "record_keys_key" | "require_binding" | "keep_hmac_keys"
        ),
        Role::Rewrap => {
            matches!(option, "stream" | "record_keys" | "record_keys_key") || option == "pad_to"
        }
    };
    if takes {
        return Ok(());
    }
    Err(match role {
        Role::Protect => format!(
            "policy.config.{option}: is for opening policies (decrypt-value, envelope-open, \
             decrypt-fields); a protecting policy binds with `bind`"
        ),
        Role::Open => format!(
            "policy.config.{option}: is how a protecting policy writes records; an opening \
             policy reads that from each record's kafka-transit.protection header and takes \
             only stream, record_keys_key, require_binding and keep_hmac_keys"
        ),
        Role::Rewrap => format!(
            "policy.config.{option}: a rewrap policy keeps each record's protection as it was \
             written; it takes only stream, record_keys, record_keys_key (and pad_to, for \
             envelope-rewrap)"
        ),
    })
}

fn text<'a>(option: &str, value: &'a Value) -> Result<&'a str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("policy.config.{option}: must be a string"))
}

fn list<'a>(option: &str, value: &'a Value) -> Result<Vec<&'a str>, String> {
    value
        .as_array()
        .and_then(|items| items.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
        .ok_or_else(|| format!("policy.config.{option}: must be a list of strings"))
}

fn one_of(option: &str, got: &str, allowed: &[&str]) -> String {
    let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "policy.config.{option}: must be {} (got {got:?})",
        allowed.join(" or ")
    )
}

/// `[policy.config]` as a JSON object.
pub(crate) fn config_table(json: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(json) {
        Ok(Value::Object(table)) => Ok(table),
        Ok(_) => Err("policy.config: must be a table".into()),
        Err(e) => Err(format!("policy.config: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(
        json: &str,
        role: Role,
        shape: Shape,
    ) -> Result<(ProtectionConfig, Vec<String>), String> {
        let mut table = config_table(json)?;
        let config = ProtectionConfig::take(&mut table, role, shape)?;
        Ok((config, table.keys().cloned().collect()))
    }

    fn error(json: &str, role: Role, shape: Shape) -> String {
        take(json, role, shape).unwrap_err()
    }

    #[test]
    fn no_option_is_formats_1_and_2_and_other_fields_are_left_for_the_policy() {
        let (config, rest) = take(
            r#"{"key":"k","fields":["/a"]}"#,
            Role::Protect,
            Shape::Fields,
        )
        .unwrap();
        assert!(!config.is_format3());
        assert_eq!(config, ProtectionConfig::none(Role::Protect, Shape::Fields));
        assert_eq!(rest, ["key", "fields"]);
    }

    #[test]
    fn every_protecting_option_is_read() {
        let (config, rest) = take(
            r#"{"key":"k","record_keys":"encrypt","record_keys_key":"record-keys",
               "headers":"seal","keep_headers":["traceparent","b3"],"bind":["stream","key"],
               "stream":"orders.v1","compression":"zstd","pad_to":256}"#,
            Role::Protect,
            Shape::Envelope,
        )
        .unwrap();
        assert_eq!(rest, ["key"]);
        assert!(config.is_format3());
        assert_eq!(config.record_keys, RecordKeys::Encrypt);
        assert_eq!(config.record_keys_key.as_deref(), Some("record-keys"));
        assert_eq!(config.keep_headers, ["traceparent", "b3"]);
        assert_eq!(config.stream.as_deref(), Some("orders.v1"));
        assert_eq!(config.flags().bits(), 0x01 | 0x02 | 0x04 | 0x40);
        assert_eq!(
            config.header_flags().bits(),
            0x01 | 0x02 | 0x04 | 0x40 | 0x10 | 0x08
        );
        // Each option alone is format 3.
        for one in [
            r#"{"record_keys":"hmac","record_keys_key":"h"}"#,
            r#"{"headers":"seal"}"#,
            r#"{"bind":["key"]}"#,
            r#"{"compression":"lz4"}"#,
            r#"{"pad_to":16}"#,
        ] {
            assert!(
                take(one, Role::Protect, Shape::Envelope)
                    .unwrap()
                    .0
                    .is_format3(),
                "{one}"
            );
        }
        // Set to their defaults, they are not.
        let (defaults, _) = take(
            r#"{"record_keys":"keep","headers":"keep","bind":[],"compression":"none","pad_to":0}"#,
            Role::Protect,
            Shape::Envelope,
        )
        .unwrap();
        assert!(!defaults.is_format3());
    }

    #[test]
    fn unknown_values_and_wrong_types_are_refused_naming_the_field() {
        for (json, field) in [
            (r#"{"record_keys":"scramble"}"#, "record_keys"),
            (r#"{"record_keys":true}"#, "record_keys"),
            (r#"{"headers":"hide"}"#, "headers"),
            (r#"{"bind":["stream","topic"]}"#, "bind"),
            (r#"{"bind":"stream"}"#, "bind"),
            (r#"{"keep_headers":[1]}"#, "keep_headers"),
            (r#"{"compression":"gzip"}"#, "compression"),
            (r#"{"pad_to":-1}"#, "pad_to"),
            (r#"{"pad_to":1.5}"#, "pad_to"),
            (r#"{"pad_to":16777217}"#, "pad_to"),
            (r#"{"stream":"a/b","bind":["stream"]}"#, "stream"),
            (r#"{"stream":"..","bind":["stream"]}"#, "stream"),
            (r#"{"stream":"","bind":["stream"]}"#, "stream"),
            (
                r#"{"record_keys":"hmac","record_keys_key":"{topic}"}"#,
                "record_keys_key",
            ),
            (
                r#"{"record_keys":"hmac","record_keys_key":"../sys"}"#,
                "record_keys_key",
            ),
        ] {
            let message = error(json, Role::Protect, Shape::Envelope);
            assert!(
                message.starts_with(&format!("policy.config.{field}: ")),
                "{json}: {message}"
            );
        }
        assert!(
            error(r#"{"compression":"gzip"}"#, Role::Protect, Shape::Envelope)
                .contains(r#""none" or "zstd" or "lz4""#)
        );
    }

    #[test]
    fn options_are_checked_together() {
        let must = |json: &str, field: &str, words: &str| {
            let message = error(json, Role::Protect, Shape::Value);
            assert!(
                message.starts_with(&format!("policy.config.{field}: ")),
                "{message}"
            );
            assert!(message.contains(words), "{message}");
        };
        must(
            r#"{"record_keys":"encrypt"}"#,
            "record_keys_key",
            "convergent_encryption = true",
        );
        must(r#"{"record_keys":"hmac"}"#, "record_keys_key", "required");
        must(r#"{"record_keys_key":"k"}"#, "record_keys_key", "no effect");
        must(
            r#"{"keep_headers":["a"]}"#,
            "keep_headers",
            "headers = \"seal\"",
        );
        must(r#"{"stream":"s"}"#, "stream", "no effect");
        // A stream for record keys alone is fine.
        assert!(take(
            r#"{"stream":"s","record_keys":"hmac","record_keys_key":"h"}"#,
            Role::Protect,
            Shape::Value
        )
        .is_ok());
    }

    #[test]
    fn what_each_kind_of_policy_takes() {
        let fields = error(r#"{"headers":"seal"}"#, Role::Protect, Shape::Fields);
        assert!(
            fields.starts_with("policy.config.headers: ") && fields.contains("whole-value"),
            "{fields}"
        );
        for shape in [Shape::Value, Shape::Fields] {
            for option in [r#"{"compression":"zstd"}"#, r#"{"pad_to":64}"#] {
                let message = error(option, Role::Protect, shape);
                assert!(message.contains("only envelope policies"), "{message}");
            }
        }
        let protect = error(
            r#"{"require_binding":["key"]}"#,
            Role::Protect,
            Shape::Value,
        );
        assert!(
            protect.starts_with("policy.config.require_binding: is for opening"),
            "{protect}"
        );
        for option in [
            r#"{"bind":["key"]}"#,
            r#"{"headers":"seal"}"#,
            r#"{"record_keys":"encrypt"}"#,
        ] {
            let message = error(option, Role::Open, Shape::Envelope);
            assert!(
                message.contains("kafka-transit.protection header"),
                "{message}"
            );
        }
        let (open, _) = take(
            r#"{"stream":"s","record_keys_key":"rk","require_binding":["stream","key"],"keep_hmac_keys":true}"#,
            Role::Open,
            Shape::Fields,
        )
        .unwrap();
        assert_eq!(
            open.require_binding,
            Binding {
                stream: true,
                key: true
            }
        );
        assert!(open.keep_hmac_keys);
        let rewrap = error(
            r#"{"record_keys":"hmac","record_keys_key":"h"}"#,
            Role::Rewrap,
            Shape::Value,
        );
        assert!(rewrap.contains("cannot be rewrapped"), "{rewrap}");
        assert!(error(r#"{"bind":["key"]}"#, Role::Rewrap, Shape::Value).contains("rewrap policy"));
        assert!(take(
            r#"{"pad_to":64,"record_keys":"encrypt","record_keys_key":"rk"}"#,
            Role::Rewrap,
            Shape::Envelope
        )
        .is_ok());
        assert!(
            error(r#"{"record_keys":"encrypt"}"#, Role::Rewrap, Shape::Value).contains("required")
        );
    }

    #[test]
    fn parse_refuses_what_it_does_not_know() {
        assert!(
            ProtectionConfig::parse(r#"{"bind":["key"]}"#, Role::Protect, Shape::Value).is_ok()
        );
        assert_eq!(
            ProtectionConfig::parse(r#"{"bnid":["key"]}"#, Role::Protect, Shape::Value)
                .unwrap_err(),
            "policy.config: unknown field `bnid`"
        );
        assert!(ProtectionConfig::parse("[]", Role::Protect, Shape::Value).is_err());
    }
}
