//! JSON wire format: request bodies (serialized straight into one pre-sized buffer,
//! base64 encoded on the fly), batch chunking, and response envelopes.

use std::fmt;
use std::ops::Range;

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use super::error::ItemError;
use super::token::VaultToken;

/// One item to encrypt. `context` is only for derived keys; `associated_data` is
/// authenticated with the ciphertext (AES-GCM and ChaCha20 keys), not stored in it.
#[derive(Clone, Copy)]
pub struct EncryptInput<'a> {
    pub plaintext: &'a [u8],
    pub context: Option<&'a [u8]>,
    pub associated_data: Option<&'a [u8]>,
}

/// One ciphertext to decrypt (or rewrap). `context` is only for derived keys;
/// `associated_data` must be the bytes the ciphertext was made with (decrypt only:
/// Vault's rewrap takes none).
#[derive(Clone, Copy)]
pub struct DecryptInput<'a> {
    pub ciphertext: &'a str,
    pub context: Option<&'a [u8]>,
    pub associated_data: Option<&'a [u8]>,
}

impl<'a> EncryptInput<'a> {
    pub fn new(plaintext: &'a [u8]) -> Self {
        EncryptInput {
            plaintext,
            context: None,
            associated_data: None,
        }
    }

    pub fn with_context(self, context: Option<&'a [u8]>) -> Self {
        EncryptInput { context, ..self }
    }

    pub fn with_associated_data(self, associated_data: Option<&'a [u8]>) -> Self {
        EncryptInput {
            associated_data,
            ..self
        }
    }
}

impl<'a> DecryptInput<'a> {
    pub fn new(ciphertext: &'a str) -> Self {
        DecryptInput {
            ciphertext,
            context: None,
            associated_data: None,
        }
    }

    pub fn with_context(self, context: Option<&'a [u8]>) -> Self {
        DecryptInput { context, ..self }
    }

    pub fn with_associated_data(self, associated_data: Option<&'a [u8]>) -> Self {
        DecryptInput {
            associated_data,
            ..self
        }
    }
}

impl fmt::Debug for EncryptInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptInput")
            .field(
                "plaintext",
                &format_args!("<redacted {} bytes>", self.plaintext.len()),
            )
            .field("context", &self.context.map(|c| c.len()))
            .field("associated_data", &self.associated_data.map(|a| a.len()))
            .finish()
    }
}

impl fmt::Debug for DecryptInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptInput")
            .field("ciphertext", &self.ciphertext)
            .field("context", &self.context.map(|c| c.len()))
            .field("associated_data", &self.associated_data.map(|a| a.len()))
            .finish()
    }
}

/// Bytes serialized as a standard-base64 JSON string without an intermediate `String`.
pub(crate) struct B64<'a>(pub &'a [u8]);

impl Serialize for B64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Base64Display::new(self.0, &STANDARD))
    }
}

impl Serialize for EncryptInput<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = 1 + self.context.is_some() as usize + self.associated_data.is_some() as usize;
        let mut m = s.serialize_map(Some(fields))?;
        m.serialize_entry("plaintext", &B64(self.plaintext))?;
        if let Some(c) = self.context {
            m.serialize_entry("context", &B64(c))?;
        }
        if let Some(a) = self.associated_data {
            m.serialize_entry("associated_data", &B64(a))?;
        }
        m.end()
    }
}

impl Serialize for DecryptInput<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = 1 + self.context.is_some() as usize + self.associated_data.is_some() as usize;
        let mut m = s.serialize_map(Some(fields))?;
        m.serialize_entry("ciphertext", self.ciphertext)?;
        if let Some(c) = self.context {
            m.serialize_entry("context", &B64(c))?;
        }
        if let Some(a) = self.associated_data {
            m.serialize_entry("associated_data", &B64(a))?;
        }
        m.end()
    }
}

/// An item of a batch request, as the generic batch call needs it.
pub(crate) trait BatchItem: Sized {
    /// Estimated JSON bytes of the item, including the separating comma.
    fn wire_len(&self) -> usize;
    /// JSON strings of the item, keys and values counted (OpenBao limits them).
    fn strings(&self) -> usize;
    /// Writes `items` as the `batch_input` array.
    fn serialize_items<S: Serializer>(items: &[Self], s: S) -> Result<S::Ok, S::Error>;
}

/// `items` as the `batch_input` array.
pub(crate) struct BatchItems<'a, I>(pub &'a [I]);

impl<I: BatchItem> Serialize for BatchItems<'_, I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        I::serialize_items(self.0, s)
    }
}

impl BatchItem for EncryptInput<'_> {
    fn wire_len(&self) -> usize {
        encrypt_item_len(self)
    }
    fn strings(&self) -> usize {
        item_strings(self.context.is_some()) + 2 * self.associated_data.is_some() as usize
    }
    fn serialize_items<S: Serializer>(items: &[Self], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(items)
    }
}

impl BatchItem for DecryptInput<'_> {
    fn wire_len(&self) -> usize {
        decrypt_item_len(self)
    }
    fn strings(&self) -> usize {
        item_strings(self.context.is_some()) + 2 * self.associated_data.is_some() as usize
    }
    fn serialize_items<S: Serializer>(items: &[Self], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(items)
    }
}

/// HMAC inputs: `[{"input": "<b64>"}, ...]`.
impl BatchItem for &[u8] {
    fn wire_len(&self) -> usize {
        hmac_item_len(self)
    }
    fn strings(&self) -> usize {
        item_strings(false)
    }
    fn serialize_items<S: Serializer>(items: &[Self], s: S) -> Result<S::Ok, S::Error> {
        struct One<'a>(&'a [u8]);
        impl Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("input", &B64(self.0))?;
                m.end()
            }
        }
        let mut seq = s.serialize_seq(Some(items.len()))?;
        for i in items {
            seq.serialize_element(&One(i))?;
        }
        seq.end()
    }
}

/// A batch request body.
#[derive(Serialize)]
pub(crate) struct BatchBody<B: Serialize> {
    pub batch_input: B,
    /// Makes Vault answer 207 (instead of 400) when only some items fail. When every item
    /// fails Vault still answers 400 with `batch_results`, which is handled too.
    pub partial_failure_response_code: u16,
}

pub(crate) const PARTIAL_FAILURE_STATUS: u16 = 207;

/// Estimated size of the envelope around the batch items.
pub(crate) const BATCH_ENVELOPE_BYTES: usize = 64;

/// The most batch items with `strings_per_item` JSON strings each that one request can
/// carry within `max_strings` JSON strings, keys and values counted (the envelope has
/// two: its field names). OpenBao refuses a body over its listener's
/// `max_request_json_strings` (1000 by default, since 2.4.1).
pub(crate) fn max_items_by_strings(max_strings: usize, strings_per_item: usize) -> usize {
    (max_strings.saturating_sub(2) / strings_per_item.max(1)).max(1)
}

/// JSON strings of one encrypt or decrypt item: its field and value, and the context's.
pub(crate) fn item_strings(has_context: bool) -> usize {
    if has_context {
        4
    } else {
        2
    }
}

pub(crate) fn b64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Length of `s` as a JSON string body (without quotes), counting escapes.
pub(crate) fn json_str_len(s: &str) -> usize {
    s.len()
        + s.bytes()
            .map(|b| match b {
                b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
                0..=0x1f => 5,
                _ => 0,
            })
            .sum::<usize>()
}

/// Estimated JSON bytes of an item, including the separating comma.
pub(crate) fn encrypt_item_len(i: &EncryptInput<'_>) -> usize {
    // {"plaintext":"..."},   and   ,"context":"..."   and   ,"associated_data":"..."
    17 + b64_len(i.plaintext.len())
        + i.context.map_or(0, |c| 13 + b64_len(c.len()))
        + i.associated_data.map_or(0, |a| 21 + b64_len(a.len()))
}

pub(crate) fn decrypt_item_len(i: &DecryptInput<'_>) -> usize {
    // {"ciphertext":"..."},
    18 + json_str_len(i.ciphertext)
        + i.context.map_or(0, |c| 13 + b64_len(c.len()))
        + i.associated_data.map_or(0, |a| 21 + b64_len(a.len()))
}

pub(crate) fn hmac_item_len(i: &[u8]) -> usize {
    // {"input":"..."},
    13 + b64_len(i.len())
}

/// Splits `n` items (sizes given by `size_of`) into consecutive ranges of at most
/// `max_items` items whose estimated request size stays within `max_bytes`. An item
/// larger than `max_bytes` on its own gets a chunk of its own (Vault will judge it).
pub(crate) fn chunk_ranges(
    n: usize,
    size_of: impl Fn(usize) -> usize,
    max_items: usize,
    max_bytes: usize,
) -> Vec<Range<usize>> {
    let max_items = max_items.max(1);
    let mut out = Vec::with_capacity(n / max_items + 1);
    let mut start = 0;
    let mut bytes = BATCH_ENVELOPE_BYTES;
    for i in 0..n {
        let sz = size_of(i);
        let count = i - start;
        if count > 0 && (count >= max_items || bytes + sz > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = BATCH_ENVELOPE_BYTES;
        }
        bytes += sz;
    }
    if start < n {
        out.push(start..n);
    }
    out
}

/// Serializes `value` into a buffer sized for `estimate` bytes.
pub(crate) fn to_json(value: &impl Serialize, estimate: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(estimate + 16);
    // Serializing these types into a Vec cannot fail.
    serde_json::to_writer(&mut buf, value).expect("serializing a Vault request");
    buf
}

// ---------------------------------------------------------------- responses

/// Vault's response envelope (only the parts we read).
#[derive(Deserialize)]
pub(crate) struct Envelope<D> {
    #[serde(default = "Option::default")]
    pub data: Option<D>,
    #[serde(default)]
    pub auth: Option<AuthInfo>,
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

/// Only the `errors` of an error response.
#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub errors: Option<Vec<String>>,
}

/// A login's or renewal's `auth` block. `Debug` shows the token as redacted.
#[derive(Deserialize, Debug)]
pub(crate) struct AuthInfo {
    #[serde(deserialize_with = "VaultToken::deserialize_wiped")]
    pub client_token: VaultToken,
    #[serde(default)]
    pub lease_duration: u64,
    #[serde(default)]
    pub renewable: bool,
}

#[derive(Deserialize)]
pub(crate) struct BatchData<I> {
    pub batch_results: Vec<I>,
}

/// Base64 text of a secret (a data key, a plaintext) decoded straight from the JSON
/// text into memory that is wiped on drop: no intermediate `String`, and a buffer sized
/// once, so no reallocation leaves an unwiped copy. serde_json hands over the text
/// borrowed from the (wiped) body; only a string with JSON escapes, which base64 never
/// has, would pass through its unwiped scratch buffer.
pub(crate) struct SecretB64(pub Zeroizing<Vec<u8>>);

impl<'de> Deserialize<'de> for SecretB64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SecretB64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretB64, E> {
                let mut out = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(v.len())]);
                let n = STANDARD
                    .decode_slice(v, &mut out[..])
                    // Not the decoder's message: it can quote a symbol of the secret.
                    .map_err(|_| E::custom("Vault returned invalid base64 for a secret"))?;
                out.truncate(n);
                Ok(SecretB64(out))
            }
        }
        d.deserialize_str(V)
    }
}

/// One item of `batch_results`.
pub(crate) trait ResultItem: DeserializeOwned {
    type Out;
    /// `Err(detail)` when the item has neither a result nor an error.
    fn into_result(self) -> Result<Result<Self::Out, ItemError>, String>;
}

fn item_error(e: Option<String>) -> Option<ItemError> {
    e.filter(|m| !m.is_empty())
        .map(|message| ItemError { message })
}

#[derive(Deserialize)]
pub(crate) struct CiphertextItem {
    #[serde(default)]
    ciphertext: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl ResultItem for CiphertextItem {
    type Out = String;
    fn into_result(self) -> Result<Result<String, ItemError>, String> {
        if let Some(e) = item_error(self.error) {
            return Ok(Err(e));
        }
        match self.ciphertext {
            Some(c) if !c.is_empty() => Ok(Ok(c)),
            _ => Err("a batch result has neither `ciphertext` nor `error`".into()),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct PlaintextItem {
    #[serde(default)]
    plaintext: Option<SecretB64>,
    #[serde(default)]
    error: Option<String>,
}

impl ResultItem for PlaintextItem {
    type Out = Zeroizing<Vec<u8>>;
    fn into_result(self) -> Result<Result<Zeroizing<Vec<u8>>, ItemError>, String> {
        if let Some(e) = item_error(self.error) {
            return Ok(Err(e));
        }
        // An empty plaintext may be sent as "" or left out.
        Ok(Ok(self.plaintext.map(|p| p.0).unwrap_or_default()))
    }
}

#[derive(Deserialize)]
pub(crate) struct HmacItem {
    #[serde(default)]
    hmac: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl ResultItem for HmacItem {
    type Out = String;
    fn into_result(self) -> Result<Result<String, ItemError>, String> {
        if let Some(e) = item_error(self.error) {
            return Ok(Err(e));
        }
        match self.hmac {
            Some(h) if !h.is_empty() => Ok(Ok(h)),
            _ => Err("a batch result has neither `hmac` nor `error`".into()),
        }
    }
}

/// Single-item responses.
#[derive(Deserialize)]
pub(crate) struct CiphertextData {
    pub ciphertext: String,
}

#[derive(Deserialize)]
pub(crate) struct PlaintextData {
    #[serde(default)]
    pub plaintext: Option<SecretB64>,
}

#[derive(Deserialize)]
pub(crate) struct DataKeyData {
    pub ciphertext: String,
    #[serde(default)]
    pub plaintext: Option<SecretB64>,
    #[serde(default)]
    pub key_version: u64,
}

#[derive(Deserialize)]
pub(crate) struct LookupData {
    #[serde(default)]
    pub ttl: u64,
    #[serde(default)]
    pub renewable: bool,
}

/// Makes Vault's multierror text ("1 error occurred:\n\t* msg\n\n") readable.
pub(crate) fn clean_error(msg: &str) -> String {
    let m = msg.trim();
    let idx = m
        .find("error occurred:")
        .or_else(|| m.find("errors occurred:"));
    if let Some(idx) = idx {
        let parts: Vec<&str> = m[idx..]
            .lines()
            .skip(1)
            .map(|l| l.trim().trim_start_matches('*').trim())
            .filter(|l| !l.is_empty())
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    m.to_string()
}

/// Joins the `errors` of an error body into one readable message.
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    let errs = serde_json::from_slice::<ErrorBody>(body).ok()?.errors?;
    Some(
        errs.iter()
            .map(|e| clean_error(e))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_size_estimates_match_serialized_json() {
        let ctx = b"ctx-123";
        let items: Vec<EncryptInput> = (0..50usize)
            .map(|i| EncryptInput {
                plaintext: &[7u8; 100][..i],
                context: (i % 3 == 0).then_some(&ctx[..]),
                associated_data: (i % 4 == 1).then_some(&ctx[..i % 7]),
            })
            .collect();
        let body = to_json(
            &BatchBody {
                batch_input: &items[..],
                partial_failure_response_code: 207,
            },
            0,
        );
        let est: usize = BATCH_ENVELOPE_BYTES + items.iter().map(encrypt_item_len).sum::<usize>();
        assert!(est >= body.len(), "estimate {est} < actual {}", body.len());
        assert!(est - body.len() <= BATCH_ENVELOPE_BYTES);

        let cts = ["vault:v1:AAAA", "we\"ird\n", "x"];
        let items: Vec<DecryptInput> = cts.iter().map(|c| DecryptInput::new(c)).collect();
        let body = to_json(
            &BatchBody {
                batch_input: &items[..],
                partial_failure_response_code: 207,
            },
            0,
        );
        let est: usize = BATCH_ENVELOPE_BYTES + items.iter().map(decrypt_item_len).sum::<usize>();
        assert!(est >= body.len() && est - body.len() <= BATCH_ENVELOPE_BYTES);

        let inputs: Vec<&[u8]> = vec![b"a", b"bb", b""];
        let body = to_json(
            &BatchBody {
                batch_input: BatchItems(&inputs[..]),
                partial_failure_response_code: 207,
            },
            0,
        );
        let est: usize =
            BATCH_ENVELOPE_BYTES + inputs.iter().map(|i| hmac_item_len(i)).sum::<usize>();
        assert!(est >= body.len() && est - body.len() <= BATCH_ENVELOPE_BYTES);
    }

    #[test]
    fn serialized_shape() {
        let items = [
            EncryptInput::new(b"hello"),
            EncryptInput::new(b"").with_context(Some(b"c")),
        ];
        let body = to_json(
            &BatchBody {
                batch_input: &items[..],
                partial_failure_response_code: 207,
            },
            0,
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"batch_input": [{"plaintext": "aGVsbG8="}, {"plaintext": "", "context": "Yw=="}],
                               "partial_failure_response_code": 207})
        );
    }

    #[test]
    fn batches_fit_openbao_json_strings_limit() {
        let items = vec![EncryptInput::new(b"x"); max_items_by_strings(1000, item_strings(false))];
        let body = to_json(
            &BatchBody {
                batch_input: &items[..],
                partial_failure_response_code: 207,
            },
            0,
        );
        let strings = |v: &serde_json::Value| -> usize {
            fn count(v: &serde_json::Value) -> usize {
                match v {
                    serde_json::Value::String(_) => 1,
                    serde_json::Value::Array(a) => a.iter().map(count).sum(),
                    serde_json::Value::Object(o) => o.values().map(|v| 1 + count(v)).sum(),
                    _ => 0,
                }
            }
            count(v)
        };
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(strings(&v), 1000);
        assert_eq!(max_items_by_strings(1000, item_strings(false)), 499);
        assert_eq!(max_items_by_strings(1000, item_strings(true)), 249);
        assert_eq!(max_items_by_strings(100_000, item_strings(false)), 49_999);
    }

    #[test]
    fn chunking_by_items() {
        let r = chunk_ranges(25_000, |_| 10, 10_000, usize::MAX);
        assert_eq!(r, vec![0..10_000, 10_000..20_000, 20_000..25_000]);
        let r = chunk_ranges(3, |_| 10, 1, usize::MAX);
        assert_eq!(r, vec![0..1, 1..2, 2..3]);
        assert!(chunk_ranges(0, |_| 10, 5, 100).is_empty());
        let r = chunk_ranges(10, |_| 10, 10, usize::MAX);
        assert_eq!(r, vec![0..10]);
    }

    #[test]
    fn chunking_by_bytes() {
        // envelope 64 + 10 items of 100 = 1064 <= 1064
        let r = chunk_ranges(25, |_| 100, 10_000, 1064);
        assert_eq!(r, vec![0..10, 10..20, 20..25]);
        // an oversize item gets its own chunk; neighbours are not starved
        let sizes = [10, 5000, 10, 10];
        let r = chunk_ranges(4, |i| sizes[i], 100, 1000);
        assert_eq!(r, vec![0..1, 1..2, 2..4]);
        // each range respects both limits
        let sizes: Vec<usize> = (0..1000).map(|i| (i * 37) % 500 + 1).collect();
        let r = chunk_ranges(sizes.len(), |i| sizes[i], 7, 2000);
        let mut next = 0;
        for c in &r {
            assert_eq!(c.start, next);
            next = c.end;
            assert!(c.len() <= 7);
            assert!(BATCH_ENVELOPE_BYTES + sizes[c.clone()].iter().sum::<usize>() <= 2000);
        }
        assert_eq!(next, 1000);
    }

    #[test]
    fn parses_batch_results() {
        let body = br#"{"request_id":"x","data":{"batch_results":[{"plaintext":"aGk=","reference":""},{"error":"cipher: message authentication failed","reference":""},{"plaintext":""}]},"warnings":null}"#;
        let env: Envelope<BatchData<PlaintextItem>> = serde_json::from_slice(body).unwrap();
        let res: Vec<_> = env
            .data
            .unwrap()
            .batch_results
            .into_iter()
            .map(|i| i.into_result().unwrap())
            .collect();
        assert_eq!(&res[0].as_ref().unwrap()[..], b"hi");
        assert!(res[1].as_ref().unwrap_err().is_invalid_input());
        assert_eq!(&res[2].as_ref().unwrap()[..], b"");
    }

    /// Issue 21: a login answer's token must not show in `Debug` (the derived `Debug`
    /// printed it).
    #[test]
    fn login_answer_debug_hides_the_token() {
        let body = br#"{"auth":{"client_token":"hvs.login-secret-token","lease_duration":60,"renewable":true}}"#;
        let env: Envelope<serde::de::IgnoredAny> = serde_json::from_slice(body).unwrap();
        let auth = env.auth.unwrap();
        let shown = format!("{auth:?} {auth:#?}");
        assert!(!shown.contains("login-secret-token"), "{shown}");
        assert!(auth.renewable && auth.lease_duration == 60);
    }

    #[test]
    fn cleans_multierror() {
        assert_eq!(
            clean_error("1 error occurred:\n\t* permission denied\n\n"),
            "permission denied"
        );
        assert_eq!(clean_error("Vault is sealed"), "Vault is sealed");
        assert_eq!(
            error_message(br#"{"errors":["a","2 errors occurred:\n\t* b\n\t* c\n\n"]}"#).unwrap(),
            "a; b; c"
        );
        assert!(error_message(b"<html>").is_none());
    }
}
