//! Name templates: how one kafka-transit pipeline names the sink topic, the dead-letter
//! topic and the Vault transit key of each record from the record itself, and whose
//! personal data a record holds (its data subject, docs/forgetting.md).
//!
//! The language is the smallest that routes many topics and tenants:
//!
//! ```text
//! template    = { text | placeholder }
//! placeholder = "{" field { "|" filter } "}"
//! field       = "topic"                      the record's source topic
//!             | "header:" NAME               the value of the record's header NAME (UTF-8;
//!                                            the last one when it repeats)
//!             | "key"                        the record key (UTF-8)
//!             | "value:" POINTER             the member of the record's JSON value at the
//!                                            JSON Pointer (RFC 6901): a string's text, a
//!                                            number as written
//! filter      = "strip_prefix:" TEXT         remove TEXT from the start, if it is there
//!             | "strip_suffix:" TEXT         remove TEXT from the end, if it is there
//! ```
//!
//! Topic names take only `{topic}`; transit key names `{topic}` and `{header:NAME}`;
//! subjects any field. A subject is text, not a name ([`Template::render_text`]).
//!
//! `"{topic}.protected"`, `"{topic|strip_suffix:.raw}.protected"` (`customers.raw` →
//! `customers.protected`), `"{topic}.dlq"`, `"tenant-{header:tenant}"`. Braces have no
//! escape: neither Kafka topic names nor Vault key names may contain them.
//!
//! A rendered name must be a valid name (see [`check_name`]): record headers come from
//! whoever produced the record, and a name like `../sys` must never reach a Vault path.
//!
//! This crate is shared by the host (topics) and the policy SDK (keys), so that both
//! read templates the same way.

use std::borrow::Cow;
use std::fmt;

/// The longest name Kafka accepts for a topic; Vault key names are held to it too.
pub const MAX_NAME_LEN: usize = 249;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field, Vec<Filter>),
}

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Topic,
    Header(String),
    Key,
    /// A JSON Pointer into the record's value.
    Value(String),
}

impl fmt::Display for Field {
    /// As written in a template.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Topic => f.write_str("{topic}"),
            Field::Header(name) => write!(f, "{{header:{name}}}"),
            Field::Key => f.write_str("{key}"),
            Field::Value(pointer) => write!(f, "{{value:{pointer}}}"),
        }
    }
}

/// What a record's value holds at a JSON Pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueAt<'a> {
    /// A string's text, or a number as written.
    Text(Cow<'a, str>),
    /// Nothing there (or a null), or no value at all.
    Missing,
    /// Something that is not text: an object, an array, a boolean, or a value that is
    /// not JSON. The reason says which, never what.
    NotText(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    StripPrefix(String),
    StripSuffix(String),
}

/// What a record offers a template: its topic and its headers, and where a template may
/// read them, its key and its value.
pub trait Record {
    fn topic(&self) -> &str;
    /// The value of the last header called `name`, if any.
    fn header(&self, name: &str) -> Option<Option<&[u8]>>;
    /// The record key; `None` for a null key. Callers that offer no keys refuse `{key}`
    /// when they parse a template ([`Template::fields`]).
    fn key(&self) -> Option<&[u8]> {
        None
    }
    /// The record's value at `pointer`. Callers that offer no values refuse `{value:...}`
    /// when they parse a template.
    fn value_at(&self, _pointer: &str) -> ValueAt<'_> {
        ValueAt::Missing
    }
}

/// Why a template could not be parsed. The message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// Why a template gave no name for one record: always the record's doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    MissingHeader(String),
    HeaderNotText(String),
    MissingKey,
    KeyNotText,
    /// Nothing at the pointer (or null).
    MissingValue(String),
    /// The pointer's member is not a string or number; why.
    ValueNotText(String, &'static str),
    /// The rendered name breaks [`check_name`]. `from_record`: a header went into it,
    /// so it is the producer's data and its `Display` does not show it (reasons reach
    /// logs and dead-letter headers, which carry metadata only).
    InvalidName {
        name: String,
        reason: &'static str,
        from_record: bool,
    },
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::MissingHeader(h) => write!(f, "the record has no header \"{h}\""),
            RenderError::HeaderNotText(h) => {
                write!(f, "the record's header \"{h}\" is not UTF-8 text")
            }
            RenderError::MissingKey => f.write_str("the record has no key (a null key)"),
            RenderError::KeyNotText => f.write_str("the record's key is not UTF-8 text"),
            RenderError::MissingValue(pointer) => {
                write!(f, "the record's value has nothing at \"{pointer}\" (or null)")
            }
            RenderError::ValueNotText(pointer, why) => write!(
                f,
                "the record's value at \"{pointer}\" is not a string or a number ({why})"
            ),
            RenderError::InvalidName {
                from_record: true,
                reason,
                ..
            } => write!(
                f,
                "the name it gives for this record (from its headers, not shown) is not a valid name: {reason}"
            ),
            RenderError::InvalidName { name, reason, .. } => {
                write!(
                    f,
                    "\"{}\" is not a valid name: {reason}",
                    name.escape_debug()
                )
            }
        }
    }
}

impl std::error::Error for RenderError {}

impl Template {
    /// Parses `text`. Errors say what is wrong; the caller prefixes the field name.
    pub fn parse(text: &str) -> Result<Template, ParseError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                Some(at) if rest.as_bytes()[at] == b'}' => {
                    return Err(ParseError(format!(
                        "\"{text}\": '}}' without a matching '{{'"
                    )))
                }
                Some(at) => {
                    if at > 0 {
                        parts.push(Part::Text(rest[..at].to_string()));
                    }
                    let close = rest[at..].find('}').ok_or_else(|| {
                        ParseError(format!("\"{text}\": '{{' without a matching '}}'"))
                    })?;
                    parts.push(placeholder(text, &rest[at + 1..at + close])?);
                    rest = &rest[at + close + 1..];
                }
                None => {
                    parts.push(Part::Text(rest.to_string()));
                    rest = "";
                }
            }
        }
        if parts.is_empty() {
            return Err(ParseError("must not be empty".into()));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The text the template was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name itself, when the template has no placeholder.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// The fields the template reads, so a caller can refuse those it cannot offer.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field(field, _) => Some(field),
            Part::Text(_) => None,
        })
    }

    /// The name for `record`, checked with [`check_name`].
    pub fn render(&self, record: &impl Record) -> Result<Cow<'_, str>, RenderError> {
        if let Some(name) = self.literal() {
            check_name(name).map_err(|reason| RenderError::InvalidName {
                name: name.to_string(),
                reason,
                from_record: false,
            })?;
            return Ok(Cow::Borrowed(name));
        }
        let name = self.assemble(record)?;
        check_name(&name).map_err(|reason| RenderError::InvalidName {
            name: name.clone(),
            reason,
            from_record: self.fields().any(|field| *field != Field::Topic),
        })?;
        Ok(Cow::Owned(name))
    }

    /// The text for `record`, not held to any naming rule: a data subject's id, which
    /// is hashed, never used as a name. Empty text is refused as missing.
    pub fn render_text(&self, record: &impl Record) -> Result<String, RenderError> {
        self.assemble(record)
    }

    fn assemble(&self, record: &impl Record) -> Result<String, RenderError> {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Text(literal) => text.push_str(literal),
                Part::Field(field, filters) => {
                    let found = field_value(field, record)?;
                    let mut value: &str = &found;
                    for filter in filters {
                        value = match filter {
                            Filter::StripPrefix(p) => {
                                value.strip_prefix(p.as_str()).unwrap_or(value)
                            }
                            Filter::StripSuffix(s) => {
                                value.strip_suffix(s.as_str()).unwrap_or(value)
                            }
                        };
                    }
                    text.push_str(value);
                }
            }
        }
        Ok(text)
    }
}

/// One placeholder's value for `record`, before filters.
fn field_value<'r>(field: &Field, record: &'r impl Record) -> Result<Cow<'r, str>, RenderError> {
    match field {
        Field::Topic => Ok(Cow::Borrowed(record.topic())),
        Field::Header(h) => match record.header(h) {
            None | Some(None) => Err(RenderError::MissingHeader(h.clone())),
            Some(Some(bytes)) => std::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|_| RenderError::HeaderNotText(h.clone())),
        },
        Field::Key => match record.key() {
            None => Err(RenderError::MissingKey),
            Some(bytes) => std::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|_| RenderError::KeyNotText),
        },
        Field::Value(pointer) => match record.value_at(pointer) {
            ValueAt::Text(text) => Ok(text),
            ValueAt::Missing => Err(RenderError::MissingValue(pointer.clone())),
            ValueAt::NotText(why) => Err(RenderError::ValueNotText(pointer.clone(), why)),
        },
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn placeholder(text: &str, inside: &str) -> Result<Part, ParseError> {
    let mut pieces = inside.split('|');
    let field = match pieces.next().unwrap_or_default() {
        "topic" => Field::Topic,
        "key" => Field::Key,
        f => match (f.strip_prefix("header:"), f.strip_prefix("value:")) {
            (Some(name), _) if !name.is_empty() => Field::Header(name.to_string()),
            (_, Some(pointer)) if pointer.starts_with('/') => Field::Value(pointer.to_string()),
            (_, Some(_)) => {
                return Err(ParseError(format!(
                    "\"{text}\": \"{{{f}}}\" needs a JSON Pointer starting with '/', e.g. \
                     {{value:/customer/id}}"
                )))
            }
            _ => {
                return Err(ParseError(format!(
                    "\"{text}\": unknown placeholder \"{{{f}}}\"; use {{topic}}, {{header:NAME}}, \
                     {{key}} or {{value:/json/pointer}}"
                )))
            }
        },
    };
    let filters = pieces
        .map(|filter| match filter.split_once(':') {
            Some(("strip_prefix", p)) if !p.is_empty() => Ok(Filter::StripPrefix(p.to_string())),
            Some(("strip_suffix", s)) if !s.is_empty() => Ok(Filter::StripSuffix(s.to_string())),
            _ => Err(ParseError(format!(
                "\"{text}\": unknown filter \"{filter}\"; use strip_prefix:TEXT or strip_suffix:TEXT"
            ))),
        })
        .collect::<Result<_, _>>()?;
    Ok(Part::Field(field, filters))
}

/// A name both Kafka (topics) and Vault (transit keys, a path segment) accept: 1 to 249
/// of `A-Z a-z 0-9 . _ -`, and not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not names");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Bytes of Vault's HMAC a data subject's key name keeps: 192 bits, so two subjects'
/// names never meet.
pub const SUBJECT_NAME_BYTES: usize = 24;

/// Characters the pseudonym adds to the prefix: the bytes in lowercase hex.
pub const SUBJECT_NAME_CHARS: usize = 2 * SUBJECT_NAME_BYTES;

/// The transit key of a data subject (docs/forgetting.md): `prefix`, then the first
/// [`SUBJECT_NAME_BYTES`] bytes of Vault's HMAC of the subject's id
/// (`vault:v1:<base64>`, `transit/hmac/<subject_hmac_key>`) in lowercase hex. The same
/// id always gives the same name, which says nothing of the id without Vault's key. Hex,
/// not base64url: Vault takes key names that end in a letter, digit or `_` only.
///
/// Only version 1 of the HMAC key is accepted: a rotated key would give every subject
/// a new name, and their records would be under keys no one finds again.
pub fn subject_key_name(prefix: &str, hmac: &str) -> Result<String, &'static str> {
    let Some(digest) = hmac.strip_prefix("vault:v1:") else {
        return Err(if hmac.starts_with("vault:v") {
            "the subject HMAC key has been rotated (its HMAC is not version 1); subjects \
             would get new key names: keep its latest version at 1"
        } else {
            "Vault's HMAC is not of the form vault:v1:<base64>"
        });
    };
    let bytes = base64_prefix(digest, SUBJECT_NAME_BYTES)
        .ok_or("Vault's HMAC is not the base64 of a SHA-256 digest")?;
    if !prefix.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return Err("a subject key prefix must start with a letter, a digit or '_'");
    }
    let mut name = String::with_capacity(prefix.len() + SUBJECT_NAME_CHARS);
    name.push_str(prefix);
    for byte in bytes {
        name.push_str(&format!("{byte:02x}"));
    }
    check_name(&name)?;
    Ok(name)
}

/// The first `count` bytes that standard base64 `text` encodes (`count` a multiple of 3).
fn base64_prefix(text: &str, count: usize) -> Option<Vec<u8>> {
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let chars = text.as_bytes().get(..count / 3 * 4)?;
    let mut out = Vec::with_capacity(count);
    for quad in chars.chunks(4) {
        let mut bits = 0u32;
        for &c in quad {
            bits = bits << 6 | u32::from(sextet(c)?);
        }
        out.extend_from_slice(&bits.to_be_bytes()[1..]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R(&'static str, Vec<(&'static str, Option<&'static [u8]>)>);

    impl Record for R {
        fn topic(&self) -> &str {
            self.0
        }
        fn header(&self, name: &str) -> Option<Option<&[u8]>> {
            self.1
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
        }
    }

    fn render(template: &str, record: &R) -> Result<String, String> {
        Template::parse(template)
            .map_err(|e| e.to_string())?
            .render(record)
            .map(Cow::into_owned)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn topic_with_filters() {
        let r = R("customers.raw", vec![]);
        assert_eq!(
            render("{topic}.protected", &r).unwrap(),
            "customers.raw.protected"
        );
        assert_eq!(
            render("{topic|strip_suffix:.raw}.protected", &r).unwrap(),
            "customers.protected"
        );
        assert_eq!(
            render("{topic|strip_prefix:customers.}", &r).unwrap(),
            "raw"
        );
        assert_eq!(
            render("x-{topic|strip_prefix:nope|strip_suffix:.raw}", &r).unwrap(),
            "x-customers",
            "a filter whose text is absent leaves the value alone; filters chain"
        );
        assert_eq!(render("fixed", &r).unwrap(), "fixed");
        assert_eq!(Template::parse("fixed").unwrap().literal(), Some("fixed"));
        assert_eq!(Template::parse("{topic}").unwrap().literal(), None);
    }

    #[test]
    fn headers_select_names_and_the_last_one_wins() {
        let r = R(
            "t",
            vec![("tenant", Some(b"acme")), ("tenant", Some(b"globex"))],
        );
        assert_eq!(
            render("tenant-{header:tenant}", &r).unwrap(),
            "tenant-globex"
        );
        assert_eq!(
            render("{header:region}", &r).unwrap_err(),
            "the record has no header \"region\""
        );
        let valueless = R("t", vec![("tenant", None)]);
        assert!(render("{header:tenant}", &valueless)
            .unwrap_err()
            .contains("no header"));
        let binary = R("t", vec![("tenant", Some(b"\xff"))]);
        assert!(render("{header:tenant}", &binary)
            .unwrap_err()
            .contains("not UTF-8"));
    }

    #[test]
    fn rendered_names_cannot_escape_into_a_vault_path() {
        for evil in ["..", ".", "a/b", "../sys/seal", "", "a b", "k\u{e9}y"] {
            let leaked: &'static [u8] = Box::leak(evil.as_bytes().to_vec().into_boxed_slice());
            let r = R("t", vec![("tenant", Some(leaked))]);
            let error = render("{header:tenant}", &r).unwrap_err();
            assert!(error.contains("is not a valid name"), "{evil:?}: {error}");
            // The producer's header value is never repeated in the reason.
            if ["a/b", "../sys/seal", "k\u{e9}y"].contains(&evil) {
                assert!(!error.contains(evil), "{evil:?}: {error}");
            }
        }
        // A name made from the topic alone is configuration: it is shown.
        let error = render("{topic|strip_prefix:t}", &R("t", vec![])).unwrap_err();
        assert!(error.starts_with("\"\" is not a valid name"), "{error}");
        assert!(check_name(&"a".repeat(250)).is_err());
        assert!(check_name(&"a".repeat(249)).is_ok());
    }

    /// Found by fuzz/fuzz_targets/names.rs: a template without placeholders rendered
    /// whatever it said, `a/b` or `..` included, though `render` promises a name that
    /// passes `check_name` (a policy's `key = "a/b"` would reach Vault as a path).
    #[test]
    fn a_literal_that_is_no_valid_name_does_not_render() {
        let r = R("t", vec![]);
        for bad in ["a/b", "..", "a b", &"k".repeat(250)] {
            let error = render(bad, &r).unwrap_err();
            assert!(error.contains("is not a valid name"), "{bad:?}: {error}");
        }
        assert_eq!(render("customers", &r).unwrap(), "customers");
    }

    #[test]
    fn parse_errors_say_what_to_write() {
        for (bad, says) in [
            ("", "must not be empty"),
            ("{topic", "without a matching '}'"),
            ("topic}", "without a matching '{'"),
            (
                "{partition}",
                "use {topic}, {header:NAME}, {key} or {value:/json/pointer}",
            ),
            ("{header:}", "use {topic}, {header:NAME}"),
            ("{value:customer}", "needs a JSON Pointer starting with '/'"),
            (
                "{topic|upper}",
                "use strip_prefix:TEXT or strip_suffix:TEXT",
            ),
            ("{topic|strip_suffix:}", "unknown filter"),
        ] {
            let error = Template::parse(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }

    #[test]
    fn fields_lists_what_a_template_reads() {
        let t = Template::parse("{topic}-{header:tenant}").unwrap();
        assert_eq!(
            t.fields().cloned().collect::<Vec<_>>(),
            [Field::Topic, Field::Header("tenant".into())]
        );
        assert_eq!(t.to_string(), "{topic}-{header:tenant}");
    }

    struct Full(R, Option<&'static [u8]>, &'static str);

    impl Record for Full {
        fn topic(&self) -> &str {
            self.0.topic()
        }
        fn header(&self, name: &str) -> Option<Option<&[u8]>> {
            self.0.header(name)
        }
        fn key(&self) -> Option<&[u8]> {
            self.1
        }
        fn value_at(&self, pointer: &str) -> ValueAt<'_> {
            match (pointer, self.2) {
                (_, "not json") => ValueAt::NotText("the value is not JSON"),
                ("/customer/id", value) => ValueAt::Text(Cow::Borrowed(value)),
                ("/customer", _) => ValueAt::NotText("an object"),
                _ => ValueAt::Missing,
            }
        }
    }

    #[test]
    fn subjects_come_from_the_key_or_the_value_and_are_text_not_names() {
        let record = Full(R("t", vec![]), Some(b"user@example.com"), "4711");
        let subject = |template: &str, record: &Full| {
            Template::parse(template)
                .unwrap()
                .render_text(record)
                .map_err(|e| e.to_string())
        };
        assert_eq!(subject("{key}", &record).unwrap(), "user@example.com");
        assert_eq!(
            subject("{value:/customer/id|strip_prefix:47}", &record).unwrap(),
            "11"
        );
        // As a name, the same text is refused without being quoted.
        let error = Template::parse("{key}")
            .unwrap()
            .render(&record)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("example"), "{error}");
        for (template, record, says) in [
            ("{key}", Full(R("t", vec![]), None, "1"), "no key"),
            (
                "{key}",
                Full(R("t", vec![]), Some(b"\xff"), "1"),
                "not UTF-8",
            ),
            (
                "{value:/other}",
                Full(R("t", vec![]), None, "1"),
                "nothing at \"/other\"",
            ),
            (
                "{value:/customer}",
                Full(R("t", vec![]), None, "1"),
                "an object",
            ),
            (
                "{value:/customer/id}",
                Full(R("t", vec![]), None, "not json"),
                "not JSON",
            ),
        ] {
            let error = subject(template, &record).unwrap_err();
            assert!(error.contains(says), "{template}: {error}");
        }
        assert_eq!(
            Template::parse("s-{value:/a~1b}-{key}")
                .unwrap()
                .fields()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["{value:/a~1b}", "{key}"]
        );
    }

    #[test]
    fn subject_key_names_are_the_prefix_and_the_hmac_in_hex() {
        // The base64 of the bytes 0x00 to 0x1f, as Vault writes a digest.
        let hmac = "vault:v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert_eq!(
            subject_key_name("customers-", hmac).unwrap(),
            "customers-000102030405060708090a0b0c0d0e0f1011121314151617"
        );
        // Vault refuses key names that end in '-' or '.': hex never does.
        let ones = "vault:v1:////////////////////////////////////////////8=";
        assert!(subject_key_name("c-", ones).unwrap().ends_with("ff"));
        let rotated = hmac.replace("vault:v1:", "vault:v2:");
        assert!(subject_key_name("c-", &rotated)
            .unwrap_err()
            .contains("rotated"));
        assert!(subject_key_name("c-", "vault:v1:short").is_err());
        let not_base64 = hmac.replace("AAEC", "AA*C");
        assert!(subject_key_name("c-", &not_base64).is_err());
        assert!(subject_key_name("a/b-", hmac).is_err(), "held to names");
        assert!(
            subject_key_name("-c", hmac).is_err(),
            "Vault refuses a leading '-'"
        );
    }
}
