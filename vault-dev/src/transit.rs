//! The transit secrets engine's HTTP surface: keys, encrypt/decrypt/rewrap (single
//! and batch), data keys, HMAC and export. Crypto lives in [`crate::keys`].
//!
//! Each handler follows the order of checks of Vault's (and OpenBao's) handler, so
//! that the first error a request meets is the one Vault reports.

use std::time::Duration;

use rand::RngCore;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::auth::Caller;
use crate::batch::{self, Item, Require};
use crate::fields::{self, Fields, Kind, Schema};
use crate::gobase64;
use crate::http::{ApiError, Op, Reply, Request};
use crate::keys::{CipherCache, CreateOptions, HmacAlgorithm, KeyError, KeyPolicy, KeyType};
use crate::server::Shared;

const MOUNT_TYPE: &str = "transit";

/// Vault's `GenericNameRegex`: `\w(([\w-.]+)?\w)?`, where `\w` is ASCII.
fn valid_name(name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return false;
    };
    word(first)
        && word(last)
        && name
            .chars()
            .all(|c| word(c) || matches!(c, '-' | '.' | '@'))
}

// The fields each endpoint accepts (Vault's path schemas).
const LIST_FIELDS: Schema = &[("after", Kind::Str), ("limit", Kind::Int)];
const KEY_FIELDS: Schema = &[
    ("name", Kind::Str),
    ("type", Kind::Str),
    ("derived", Kind::Bool),
    ("convergent_encryption", Kind::Bool),
    ("exportable", Kind::Bool),
    ("allow_plaintext_backup", Kind::Bool),
    ("context", Kind::Str),
    ("auto_rotate_period", Kind::Duration),
    ("key_size", Kind::Int),
];
const CONFIG_FIELDS: Schema = &[
    ("name", Kind::Str),
    ("min_decryption_version", Kind::Int),
    ("min_encryption_version", Kind::Int),
    ("deletion_allowed", Kind::Bool),
    ("exportable", Kind::Bool),
    ("allow_plaintext_backup", Kind::Bool),
    ("auto_rotate_period", Kind::Duration),
];
const ROTATE_FIELDS: Schema = &[("name", Kind::Str)];
const ENCRYPT_FIELDS: Schema = &[
    ("name", Kind::Str),
    ("plaintext", Kind::Str),
    ("context", Kind::Str),
    ("type", Kind::Str),
    ("convergent_encryption", Kind::Bool),
    ("key_version", Kind::Int),
    ("partial_failure_response_code", Kind::Int),
    ("associated_data", Kind::Str),
    ("batch_input", Kind::Slice),
];
const DECRYPT_FIELDS: Schema = &[
    ("name", Kind::Str),
    ("ciphertext", Kind::Str),
    ("context", Kind::Str),
    ("partial_failure_response_code", Kind::Int),
    ("associated_data", Kind::Str),
    ("batch_input", Kind::Slice),
];
const REWRAP_FIELDS: Schema = &[
    ("name", Kind::Str),
    ("ciphertext", Kind::Str),
    ("context", Kind::Str),
    ("key_version", Kind::Int),
    ("batch_input", Kind::Slice),
];
const DATAKEY_FIELDS: Schema = &[
    ("name", Kind::Str),
    ("plaintext", Kind::Str),
    ("context", Kind::Str),
    ("bits", Kind::Int),
    ("key_version", Kind::Int),
    ("associated_data", Kind::Str),
];
const HMAC_FIELDS: Schema = &[
    ("name", Kind::Str),
    ("input", Kind::Str),
    ("algorithm", Kind::Str),
    ("urlalgorithm", Kind::Str),
    ("key_version", Kind::Int),
    ("batch_input", Kind::Slice),
];
const EXPORT_FIELDS: Schema = &[
    ("type", Kind::Str),
    ("name", Kind::Str),
    ("version", Kind::Str),
    ("format", Kind::Str),
];

/// The endpoints of a transit mount, with what the path captured.
enum Route<'p> {
    ListKeys,
    Key(&'p str),
    Config(&'p str),
    Rotate(&'p str),
    Encrypt(&'p str),
    Decrypt(&'p str),
    Rewrap(&'p str),
    Datakey(&'p str, &'p str),
    Hmac(&'p str, String),
    Export(&'p str, &'p str, String),
}

impl Route<'_> {
    fn parse(sub: &str) -> Option<Route<'_>> {
        let segs: Vec<&str> = sub.split('/').collect();
        // `(/(?P<x>.+))?` at the end of a pattern: the rest, slashes included.
        let tail = |rest: &[&str]| match rest {
            [] => Some(String::new()),
            _ if rest.join("/").is_empty() => None,
            _ => Some(rest.join("/")),
        };
        Some(match segs.as_slice() {
            ["keys"] | ["keys", ""] => Route::ListKeys,
            ["keys", name] if valid_name(name) => Route::Key(name),
            ["keys", name, "config"] if valid_name(name) => Route::Config(name),
            ["keys", name, "rotate"] if valid_name(name) => Route::Rotate(name),
            ["encrypt", name] if valid_name(name) => Route::Encrypt(name),
            ["decrypt", name] if valid_name(name) => Route::Decrypt(name),
            ["rewrap", name] if valid_name(name) => Route::Rewrap(name),
            ["datakey", kind, name] if valid_name(kind) && valid_name(name) => {
                Route::Datakey(kind, name)
            }
            ["hmac", name, rest @ ..] if valid_name(name) => Route::Hmac(name, tail(rest)?),
            ["export", kind, name, rest @ ..] if valid_name(kind) && valid_name(name) => {
                Route::Export(kind, name, tail(rest)?)
            }
            _ => return None,
        })
    }

    fn schema(&self) -> Schema {
        match self {
            Route::ListKeys => LIST_FIELDS,
            Route::Key(_) => KEY_FIELDS,
            Route::Config(_) => CONFIG_FIELDS,
            Route::Rotate(_) => ROTATE_FIELDS,
            Route::Encrypt(_) => ENCRYPT_FIELDS,
            Route::Decrypt(_) => DECRYPT_FIELDS,
            Route::Rewrap(_) => REWRAP_FIELDS,
            Route::Datakey(..) => DATAKEY_FIELDS,
            Route::Hmac(..) => HMAC_FIELDS,
            Route::Export(..) => EXPORT_FIELDS,
        }
    }

    fn supports(&self, op: Op) -> bool {
        match self {
            Route::ListKeys => op == Op::List,
            Route::Key(_) => matches!(op, Op::Read | Op::Write | Op::Delete),
            Route::Export(..) => op == Op::Read,
            _ => op == Op::Write,
        }
    }
}

/// The fixed policy of AppRole tokens (there is no policy language): transit data
/// operations, and reading and listing keys. Like Vault's ACL it is checked before
/// anything else, so a denied path is denied whether or not it exists.
pub(crate) fn approle_allows(sub: &str, op: Op) -> bool {
    let data_op = ["encrypt/", "decrypt/", "rewrap/", "datakey/", "hmac/"]
        .iter()
        .any(|p| sub.starts_with(p));
    match op {
        Op::Write => data_op,
        Op::Read => sub.starts_with("keys/"),
        Op::List => sub == "keys" || sub == "keys/",
        Op::Delete => false,
    }
}

/// Route a request inside a transit mount. `sub` is the path after the mount.
pub(crate) fn handle(
    shared: &Shared,
    mount: &str,
    sub: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    if req.caller != Caller::Root && !approle_allows(sub, req.op) {
        return Err(ApiError::PolicyDenied);
    }
    let route = Route::parse(sub).ok_or(ApiError::UnsupportedPath)?;
    // Vault lists `<path>/`, which only `keys/` matches.
    if req.op == Op::List && !matches!(route, Route::ListKeys) {
        return Err(ApiError::UnsupportedPath);
    }
    if !route.supports(req.op) {
        return Err(ApiError::UnsupportedOperation);
    }
    let ignored = fields::validate(&req.body, route.schema()).map_err(|e| match route {
        // Encrypt has an existence check, which reports the error without the prefix.
        Route::Encrypt(_) => ApiError::BadRequest(e),
        _ => ApiError::BadRequest(format!("Field validation failed: {e}")),
    })?;
    let ctx = Ctx {
        shared,
        mount,
        req,
        fields: Fields(&req.body),
    };
    let reply = match route {
        Route::ListKeys => ctx.list_keys(),
        Route::Key(name) => match req.op {
            Op::Read => ctx.read_key(name),
            Op::Delete => ctx.delete_key(name),
            _ => ctx.create_key(name),
        },
        Route::Config(name) => ctx.config_key(name),
        Route::Rotate(name) => ctx.rotate_key(name),
        Route::Encrypt(name) => ctx.encrypt(name),
        Route::Decrypt(name) => ctx.decrypt(name),
        Route::Rewrap(name) => ctx.rewrap(name),
        Route::Datakey(kind, name) => ctx.datakey(kind, name),
        Route::Hmac(name, alg) => ctx.hmac(name, &alg),
        Route::Export(kind, name, version) => ctx.export(kind, name, &version),
    }?;
    Ok(with_ignored(reply, &ignored))
}

/// Add Vault's warning about unknown fields. Like Vault, it only reaches the client
/// on a plain 200 (a batch answered with another status carries its own body).
fn with_ignored(reply: Reply, ignored: &[String]) -> Reply {
    let Some(warning) = fields::ignored_warning(ignored) else {
        return reply;
    };
    match reply.status {
        200 => reply.add_warning(warning),
        204 => Reply::data(Value::Null, MOUNT_TYPE).add_warning(warning),
        _ => reply,
    }
}

/// An encrypt item's base64 inputs, decoded.
struct Decoded {
    plaintext: Zeroizing<Vec<u8>>,
    context: Vec<u8>,
}

/// The outcome of one batch item. Internal errors are kept apart: they change the
/// status (500) and, for a single request, the error text (multierror form).
enum Outcome<T> {
    Ok(T),
    UserError(String),
    InternalError(String),
}

impl<T> From<Result<T, KeyError>> for Outcome<T> {
    fn from(r: Result<T, KeyError>) -> Self {
        match r {
            Ok(v) => Outcome::Ok(v),
            Err(KeyError::User(m)) => Outcome::UserError(m),
            Err(KeyError::Internal(m)) => Outcome::InternalError(m),
        }
    }
}

/// The data of an encrypt or rewrap result.
fn ciphertext_data((ciphertext, version): (String, u32)) -> Value {
    json!({ "ciphertext": ciphertext, "key_version": version })
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::User(m) => ApiError::BadRequest(m),
        KeyError::Internal(m) => ApiError::Internal(m),
    }
}

fn batch_parse_error(e: String) -> ApiError {
    ApiError::Internal(format!("failed to parse batch input: {e}"))
}

fn auto_rotate_error(min: Duration) -> ApiError {
    if min == Duration::from_secs(3600) {
        ApiError::bad("auto rotate period must be 0 to disable or at least an hour")
    } else {
        ApiError::bad(format!(
            "auto rotate period must be 0 to disable or at least {}s",
            min.as_secs()
        ))
    }
}

/// A key type Vault knows but vault-dev does not implement.
fn unsupported_type(name: &str) -> ApiError {
    ApiError::bad(format!(
        "key type {name} is not supported by vault-dev (only aes256-gcm96, aes128-gcm96, chacha20-poly1305)"
    ))
}

/// Key types of `keys/<name>`: vault-dev's three, Vault's others, or unknown.
fn parse_key_type(name: &str) -> Result<KeyType, ApiError> {
    match name {
        "aes256-gcm96" => Ok(KeyType::Aes256Gcm96),
        "aes128-gcm96" => Ok(KeyType::Aes128Gcm96),
        "chacha20-poly1305" => Ok(KeyType::ChaCha20Poly1305),
        "xchacha20-poly1305" | "ecdsa-p256" | "ecdsa-p384" | "ecdsa-p521" | "ed25519"
        | "rsa-2048" | "rsa-3072" | "rsa-4096" | "hmac" => Err(unsupported_type(name)),
        _ => Err(ApiError::bad(format!("unknown key type {name}"))),
    }
}

struct Ctx<'a> {
    shared: &'a Shared,
    mount: &'a str,
    req: &'a Request,
    fields: Fields<'a>,
}

impl Ctx<'_> {
    fn gone(&self) -> ApiError {
        ApiError::NoHandler(self.req.path.clone())
    }

    fn check_auto_rotate(&self, secs: u64) -> Result<(), ApiError> {
        let min = self.shared.min_auto_rotate_period;
        if secs != 0 && Duration::from_secs(secs) < min {
            return Err(auto_rotate_error(min));
        }
        Ok(())
    }

    /// Run `f` on a key under the read lock; a missing key is `missing()`.
    fn with_key<T>(
        &self,
        name: &str,
        missing: impl FnOnce() -> ApiError,
        f: impl FnOnce(&KeyPolicy) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let state = self.shared.read_state();
        let mount = state.mounts.get(self.mount).ok_or_else(|| self.gone())?;
        match mount.keys.get(name) {
            Some(p) => f(p),
            None => Err(missing()),
        }
    }

    fn key_exists(&self, name: &str) -> Result<bool, ApiError> {
        let state = self.shared.read_state();
        let mount = state.mounts.get(self.mount).ok_or_else(|| self.gone())?;
        Ok(mount.keys.contains_key(name))
    }

    /// Create a key unless it exists; returns whether it was created.
    fn upsert_key(&self, name: &str, opts: &CreateOptions) -> Result<bool, ApiError> {
        self.shared.mutate(|state| {
            let mount = state
                .mounts
                .get_mut(self.mount)
                .ok_or_else(|| self.gone())?;
            if mount.keys.contains_key(name) {
                return Ok(false);
            }
            mount
                .keys
                .insert(name.to_string(), KeyPolicy::new(name, opts));
            Ok(true)
        })
    }

    /// Mutate a key under the write lock (persisted after).
    fn mutate_key<T>(
        &self,
        name: &str,
        missing: impl FnOnce() -> ApiError,
        f: impl FnOnce(&mut KeyPolicy) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.shared.mutate(|state| {
            let mount = state
                .mounts
                .get_mut(self.mount)
                .ok_or_else(|| self.gone())?;
            let p = mount.keys.get_mut(name).ok_or_else(missing)?;
            f(p)
        })
    }

    fn list_keys(&self) -> Result<Reply, ApiError> {
        let after = self.fields.str("after").unwrap_or_default();
        let limit = self.fields.int("limit").unwrap_or(0);
        let state = self.shared.read_state();
        let mount = state.mounts.get(self.mount).ok_or_else(|| self.gone())?;
        let keys: Vec<&String> = mount
            .keys
            .keys()
            .filter(|k| after.is_empty() || k.as_str() > after.as_str())
            .take(if limit > 0 {
                limit as usize
            } else {
                usize::MAX
            })
            .collect();
        if keys.is_empty() {
            return Err(ApiError::NotFound);
        }
        Ok(Reply::data(json!({ "keys": keys }), MOUNT_TYPE))
    }

    fn read_key(&self, name: &str) -> Result<Reply, ApiError> {
        let context = self.fields.str("context").unwrap_or_default();
        self.with_key(
            name,
            || ApiError::NotFound,
            |p| {
                // Only asymmetric derived keys use it, but it must be base64.
                gobase64::decode(&context)
                    .map_err(|_| ApiError::bad("failed to base64-decode context"))?;
                Ok(Reply::data(p.to_json(), MOUNT_TYPE))
            },
        )
    }

    fn create_key(&self, name: &str) -> Result<Reply, ApiError> {
        let f = self.fields;
        let derived = f.bool("derived").unwrap_or(false);
        let convergent = f.bool("convergent_encryption").unwrap_or(false);
        let auto_rotate = f.duration_secs("auto_rotate_period").unwrap_or(0);
        self.check_auto_rotate(auto_rotate)?;
        if convergent && !derived {
            return Err(ApiError::bad(
                "convergent encryption requires derivation to be enabled",
            ));
        }
        let type_name = f.str_or("type", "aes256-gcm96");
        let key_type = parse_key_type(&type_name)?;
        if f.int("key_size").unwrap_or(0) != 0 {
            return Err(ApiError::bad(format!(
                "key_size is not valid for algorithm {type_name}"
            )));
        }
        let opts = CreateOptions {
            key_type,
            derived,
            convergent,
            exportable: f.bool("exportable").unwrap_or(false),
            allow_plaintext_backup: f.bool("allow_plaintext_backup").unwrap_or(false),
            auto_rotate_period_secs: auto_rotate,
        };
        // An existing key is returned unchanged (Vault means to warn about it, but
        // its lock manager never reports the key as pre-existing).
        self.upsert_key(name, &opts)?;
        self.read_key(name)
    }

    fn delete_key(&self, name: &str) -> Result<Reply, ApiError> {
        self.shared.mutate(|state| {
            let mount = state
                .mounts
                .get_mut(self.mount)
                .ok_or_else(|| self.gone())?;
            match mount.keys.get(name) {
                None => Err(ApiError::bad(format!(
                    "error deleting policy {name}: could not delete key; not found"
                ))),
                Some(p) if !p.deletion_allowed => Err(ApiError::bad(format!(
                    "error deleting policy {name}: deletion is not allowed for this key"
                ))),
                Some(_) => {
                    mount.keys.remove(name);
                    Ok(())
                }
            }
        })?;
        Ok(Reply::no_content())
    }

    fn config_key(&self, name: &str) -> Result<Reply, ApiError> {
        let f = self.fields;
        let min_dec = f.int("min_decryption_version");
        let min_enc = f.int("min_encryption_version");
        let deletion_allowed = f.bool("deletion_allowed");
        let exportable = f.bool("exportable");
        let plaintext_backup = f.bool("allow_plaintext_backup");
        let auto_rotate = f.duration_secs("auto_rotate_period");
        let missing = || ApiError::bad(format!("no existing key named {name} could be found"));
        self.mutate_key(name, missing, |p| {
            let mut warnings = Vec::new();
            let latest = i64::from(p.latest_version);
            let mut new_dec = i64::from(p.min_decryption_version);
            let mut new_enc = i64::from(p.min_encryption_version);
            if let Some(mut v) = min_dec {
                if v < 0 {
                    return Err(ApiError::bad("min decryption version cannot be negative"));
                }
                if v == 0 {
                    v = 1;
                    // Vault's text (OpenBao adds "(prior to the OpenBao fork)").
                    warnings.push(
                        "since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1"
                            .to_string(),
                    );
                }
                if v != new_dec && v > latest {
                    return Err(ApiError::bad(format!(
                        "cannot set min decryption version of {v}, latest key version is {latest}"
                    )));
                }
                new_dec = v;
            }
            if let Some(v) = min_enc {
                if v < 0 {
                    return Err(ApiError::bad("min encryption version cannot be negative"));
                }
                if v != new_enc && v > latest {
                    return Err(ApiError::bad(format!(
                        "cannot set min encryption version of {v}, latest key version is {latest}"
                    )));
                }
                new_enc = v;
            }
            if new_enc > 0 && new_enc < new_dec {
                return Err(ApiError::bad(format!(
                    "cannot set min encryption/decryption values; min encryption version of {new_enc} must be greater than or equal to min decryption version of {new_dec}"
                )));
            }
            if let Some(secs) = auto_rotate {
                self.check_auto_rotate(secs)?;
            }
            // Everything validated: apply.
            p.min_decryption_version = new_dec as u32;
            p.min_encryption_version = new_enc as u32;
            if let Some(d) = deletion_allowed {
                p.deletion_allowed = d;
            }
            // Like Vault, exportable and allow_plaintext_backup can only be turned on.
            if exportable == Some(true) {
                p.exportable = true;
            }
            if plaintext_backup == Some(true) {
                p.allow_plaintext_backup = true;
            }
            if let Some(secs) = auto_rotate {
                p.auto_rotate_period_secs = secs;
            }
            Ok(Reply::data(p.to_json(), MOUNT_TYPE).with_warnings(warnings))
        })
    }

    fn rotate_key(&self, name: &str) -> Result<Reply, ApiError> {
        self.mutate_key(
            name,
            || ApiError::bad("key not found"),
            |p| {
                p.rotate();
                Ok(Reply::data(p.to_json(), MOUNT_TYPE))
            },
        )
    }

    /// The batch items, or the single request as one item (`batch` is false).
    fn items(
        &self,
        decode: impl FnOnce(&Value) -> Result<Vec<Item>, String>,
        single: impl FnOnce() -> Result<Item, ApiError>,
    ) -> Result<(Vec<Item>, bool), ApiError> {
        match self.fields.raw("batch_input") {
            Some(raw) => {
                let items = decode(raw).map_err(batch_parse_error)?;
                if items.is_empty() {
                    return Err(ApiError::bad("missing batch input to process"));
                }
                self.shared.counters.add_items(items.len());
                Ok((items, true))
            }
            None => {
                self.shared.counters.add_items(1);
                Ok((vec![single()?], false))
            }
        }
    }

    /// The fields of the single (non-batch) form.
    fn single_item(&self, text_field: &str) -> Item {
        let f = self.fields;
        let text = f.str(text_field).unwrap_or_default();
        Item {
            plaintext: if text_field == "plaintext" {
                text.clone()
            } else {
                String::new()
            },
            ciphertext: if text_field == "ciphertext" {
                text
            } else {
                String::new()
            },
            context: f.str("context").unwrap_or_default(),
            associated_data: f.str("associated_data").unwrap_or_default(),
            key_version: f.int("key_version").unwrap_or(0),
            reference: String::new(),
        }
    }

    /// A single request's outcome, or its error.
    fn single<T>(outcome: Outcome<T>) -> Result<T, ApiError> {
        match outcome {
            Outcome::Ok(v) => Ok(v),
            Outcome::UserError(m) => Err(ApiError::BadRequest(m)),
            Outcome::InternalError(m) => Err(ApiError::Internal(m)),
        }
    }

    /// The reply to a batch: each outcome as `ok(value)` or `{"error"}` (merged into
    /// `error_extra`), plus `reference`. With `vault_status` (encrypt, decrypt), Vault's
    /// `batchRequestResponse`: a failed item makes it 400 (500 when all failures are
    /// internal), or `partial_failure_response_code` when some item succeeded.
    fn batch_reply<T>(
        &self,
        outcomes: Vec<Outcome<T>>,
        items: &[Item],
        ok: impl Fn(T) -> Value,
        error_extra: Value,
        vault_status: bool,
    ) -> Reply {
        let any_ok = outcomes.iter().any(|o| matches!(o, Outcome::Ok(_)));
        let any_user = outcomes.iter().any(|o| matches!(o, Outcome::UserError(_)));
        let any_internal = outcomes
            .iter()
            .any(|o| matches!(o, Outcome::InternalError(_)));
        let results: Vec<Value> = outcomes
            .into_iter()
            .zip(items)
            .map(|(o, item)| {
                let mut v = match o {
                    Outcome::Ok(t) => ok(t),
                    Outcome::UserError(e) | Outcome::InternalError(e) => {
                        let mut v = error_extra.clone();
                        v["error"] = json!(e);
                        v
                    }
                };
                v["reference"] = json!(item.reference);
                v
            })
            .collect();
        let reply = Reply::data(json!({ "batch_results": results }), MOUNT_TYPE);
        if !vault_status || !(any_user || any_internal) {
            return reply;
        }
        let mut status = if any_user { 400 } else { 500 };
        if let (true, Some(code)) = (any_ok, self.fields.int("partial_failure_response_code")) {
            if (1..=599).contains(&code) {
                status = code as u16;
            } else {
                return reply.with_status(status).add_warning(format!(
                    "invalid HTTP response code override from partial_failure_response_code, reverting to {status}"
                ));
            }
        }
        reply.with_status(status)
    }

    /// The context check every data operation makes first: set in all items or none.
    fn check_contexts(items: &[Item]) -> Result<bool, ApiError> {
        let context_set = !items[0].context.is_empty();
        if items.iter().any(|i| i.context.is_empty() == context_set) {
            return Err(ApiError::bad(
                "context should be set either in all the request blocks or in none",
            ));
        }
        Ok(context_set)
    }

    fn encrypt(&self, name: &str) -> Result<Reply, ApiError> {
        let f = self.fields;
        let (items, batch) = self.items(
            |raw| batch::decode_fast(raw, Require::Plaintext),
            || match f.str("plaintext") {
                None => Err(ApiError::bad("missing plaintext to encrypt")),
                Some(_) => Ok(self.single_item("plaintext")),
            },
        )?;
        let context_set = Self::check_contexts(&items)?;
        // Inputs decoded before the key is looked up; failures are the items' errors.
        let decoded: Vec<Result<Decoded, String>> = items
            .iter()
            .map(|i| {
                Ok(Decoded {
                    plaintext: Zeroizing::new(
                        gobase64::decode(&i.plaintext).map_err(|e| e.to_string())?,
                    ),
                    context: gobase64::decode(&i.context).map_err(|e| e.to_string())?,
                })
            })
            .collect();

        // A missing key is created (Vault's upsert, for tokens that may create).
        if !self.key_exists(name)? {
            let convergent = f.bool("convergent_encryption").unwrap_or(false);
            if convergent && !context_set {
                return Err(ApiError::bad(
                    "convergent encryption requires derivation to be enabled, so context is required",
                ));
            }
            let type_name = f.str_or("type", "aes256-gcm96");
            let key_type = match type_name.as_str() {
                "ecdsa-p256" | "ecdsa-p384" | "ecdsa-p521" => {
                    return Err(ApiError::bad(format!(
                        "key type {type_name} not supported for this operation"
                    )))
                }
                "xchacha20-poly1305" => return Err(unsupported_type(&type_name)),
                "aes256-gcm96" | "aes128-gcm96" | "chacha20-poly1305" => {
                    parse_key_type(&type_name)?
                }
                _ => return Err(ApiError::bad(format!("unknown key type {type_name}"))),
            };
            self.upsert_key(
                name,
                &CreateOptions {
                    key_type,
                    derived: context_set,
                    convergent,
                    ..CreateOptions::default()
                },
            )?;
        }

        let outcomes: Vec<Outcome<(String, u32)>> = self.with_key(
            name,
            || ApiError::bad("encryption key not found"),
            |p| {
                let mut cache = CipherCache::default();
                Ok(items
                    .iter()
                    .zip(&decoded)
                    .map(|(item, d)| match d {
                        Err(e) => Outcome::UserError(e.clone()),
                        Ok(d) => p
                            .encrypt(
                                item.key_version,
                                &d.context,
                                &d.plaintext,
                                &item.associated_data,
                                &mut cache,
                            )
                            .into(),
                    })
                    .collect())
            },
        )?;
        if !batch {
            let outcome = outcomes.into_iter().next().ok_or(ApiError::NotFound)?;
            return Ok(Reply::data(
                ciphertext_data(Self::single(outcome)?),
                MOUNT_TYPE,
            ));
        }
        Ok(self.batch_reply(outcomes, &items, ciphertext_data, json!({}), true))
    }

    fn decrypt(&self, name: &str) -> Result<Reply, ApiError> {
        let (items, batch) = self.items(
            |raw| batch::decode_fast(raw, Require::Ciphertext),
            || {
                let item = self.single_item("ciphertext");
                if item.ciphertext.is_empty() {
                    return Err(ApiError::bad("missing ciphertext to decrypt"));
                }
                Ok(item)
            },
        )?;
        Self::check_contexts(&items)?;
        let contexts: Vec<Result<Vec<u8>, String>> = items
            .iter()
            .map(|i| {
                if i.ciphertext.is_empty() {
                    return Err("missing ciphertext to decrypt".to_string());
                }
                gobase64::decode(&i.context).map_err(|e| e.to_string())
            })
            .collect();
        let outcomes: Vec<Outcome<String>> = self.with_key(
            name,
            || ApiError::bad("encryption key not found"),
            |p| {
                let mut cache = CipherCache::default();
                Ok(items
                    .iter()
                    .zip(&contexts)
                    .map(|(item, c)| match c {
                        Err(e) => Outcome::UserError(e.clone()),
                        Ok(ctx) => p
                            .decrypt(&item.ciphertext, ctx, &item.associated_data, &mut cache)
                            .map(|pt| gobase64::encode(&pt))
                            .into(),
                    })
                    .collect())
            },
        )?;
        let plaintext_data = |pt: String| json!({ "plaintext": pt });
        if !batch {
            let outcome = outcomes.into_iter().next().ok_or(ApiError::NotFound)?;
            return Ok(Reply::data(
                plaintext_data(Self::single(outcome)?),
                MOUNT_TYPE,
            ));
        }
        // Decrypt's result items always carry `plaintext`, empty on error.
        let error_extra = json!({ "plaintext": "" });
        Ok(self.batch_reply(outcomes, &items, plaintext_data, error_extra, true))
    }

    /// Rewrap differs from encrypt/decrypt in Vault: `associated_data` and
    /// `partial_failure_response_code` are not supported, a batch always answers
    /// 200, and an internal error fails the whole request.
    fn rewrap(&self, name: &str) -> Result<Reply, ApiError> {
        let (items, batch) = self.items(batch::decode_mapstructure, || {
            let mut item = self.single_item("ciphertext");
            if item.ciphertext.is_empty() {
                return Err(ApiError::bad("missing ciphertext to decrypt"));
            }
            item.associated_data.clear();
            Ok(item)
        })?;
        Self::check_contexts(&items)?;
        let contexts: Vec<Result<Vec<u8>, String>> = items
            .iter()
            .map(|i| {
                if i.ciphertext.is_empty() {
                    return Err("missing ciphertext to decrypt".to_string());
                }
                gobase64::decode(&i.context).map_err(|e| e.to_string())
            })
            .collect();
        let results: Vec<Result<(String, u32), String>> = self.with_key(
            name,
            || ApiError::bad("encryption key not found"),
            |p| {
                let mut cache = CipherCache::default();
                items
                    .iter()
                    .zip(&contexts)
                    .map(|(item, c)| {
                        let ctx = match c {
                            Err(e) => return Ok(Err(e.clone())),
                            Ok(ctx) => ctx,
                        };
                        let rewrapped = p
                            .decrypt(&item.ciphertext, ctx, "", &mut cache)
                            .and_then(|pt| p.encrypt(item.key_version, ctx, &pt, "", &mut cache));
                        match rewrapped {
                            Ok(v) => Ok(Ok(v)),
                            Err(KeyError::User(m)) => Ok(Err(m)),
                            Err(KeyError::Internal(m)) => Err(ApiError::Internal(m)),
                        }
                    })
                    .collect()
            },
        )?;
        if !batch {
            let result = results.into_iter().next().ok_or(ApiError::NotFound)?;
            let data = ciphertext_data(result.map_err(ApiError::BadRequest)?);
            return Ok(Reply::data(data, MOUNT_TYPE));
        }
        let outcomes = results
            .into_iter()
            .map(|r| match r {
                Ok(v) => Outcome::Ok(v),
                Err(e) => Outcome::UserError(e),
            })
            .collect();
        Ok(self.batch_reply(outcomes, &items, ciphertext_data, json!({}), false))
    }

    fn datakey(&self, kind: &str, name: &str) -> Result<Reply, ApiError> {
        let include_plaintext = match kind {
            "plaintext" => true,
            "wrapped" => false,
            _ => {
                return Err(ApiError::bad(
                    "Invalid path, must be 'plaintext' or 'wrapped'",
                ))
            }
        };
        let f = self.fields;
        let context = gobase64::decode(&f.str("context").unwrap_or_default())
            .map_err(|_| ApiError::bad("failed to base64-decode context"))?;
        let key_version = f.int("key_version").unwrap_or(0);
        let aad = f.str("associated_data").unwrap_or_default();
        self.with_key(
            name,
            || ApiError::bad("encryption key not found"),
            |p| {
                let len = match f.int("bits").unwrap_or(256) {
                    128 => 16,
                    256 => 32,
                    512 => 64,
                    _ => return Err(ApiError::bad("invalid bit length")),
                };
                let mut secret = Zeroizing::new(vec![0u8; len]);
                rand::rngs::OsRng.fill_bytes(&mut secret);
                let (ciphertext, version) = p
                    .encrypt(
                        key_version,
                        &context,
                        &secret,
                        &aad,
                        &mut CipherCache::default(),
                    )
                    .map_err(key_error)?;
                let mut data = json!({ "ciphertext": ciphertext, "key_version": version });
                if include_plaintext {
                    data["plaintext"] = json!(gobase64::encode(&secret));
                }
                Ok(Reply::data(data, MOUNT_TYPE))
            },
        )
    }

    fn hmac(&self, name: &str, path_alg: &str) -> Result<Reply, ApiError> {
        let f = self.fields;
        let requested = f.int("key_version").unwrap_or(0);
        let alg_name = if path_alg.is_empty() {
            f.str_or("algorithm", "sha2-256")
        } else {
            path_alg.to_string()
        };
        self.with_key(
            name,
            || ApiError::bad("encryption key not found"),
            |p| {
                let ver = p.hmac_version(requested).map_err(key_error)?;
                let alg = match HmacAlgorithm::parse(&alg_name) {
                    Some(alg) => alg,
                    None if matches!(
                        alg_name.as_str(),
                        "none" | "sha1" | "sha3-224" | "sha3-256" | "sha3-384" | "sha3-512"
                    ) =>
                    {
                        return Err(ApiError::bad(format!(
                            "algorithm {alg_name} is not supported by vault-dev (only sha2-224, sha2-256, sha2-384, sha2-512)"
                        )))
                    }
                    // Vault's text: it formats the (zero) hash type, not the name.
                    None => return Err(ApiError::bad("unsupported algorithm '\\x00'")),
                };
                let compute = |input: &str| -> Result<String, String> {
                    let bytes = gobase64::decode(input)
                        .map_err(|e| format!("unable to decode input as base64: {e}"))?;
                    p.hmac(ver, alg, &bytes).map_err(|e| e.to_string())
                };
                let Some(raw) = f.raw("batch_input") else {
                    self.shared.counters.add_items(1);
                    let input = f
                        .str("input")
                        .ok_or_else(|| ApiError::bad("missing input for HMAC"))?;
                    let hmac = compute(&input).map_err(ApiError::BadRequest)?;
                    return Ok(Reply::data(json!({ "hmac": hmac }), MOUNT_TYPE));
                };
                let items = batch::decode_string_maps(raw).map_err(batch_parse_error)?;
                if items.is_empty() {
                    return Err(ApiError::bad("missing batch input to process"));
                }
                self.shared.counters.add_items(items.len());
                // Vault answers 200 for HMAC batches even when items fail.
                let results: Vec<Value> = items
                    .iter()
                    .map(|item| {
                        let text = |k: &str| item.get(k).and_then(Value::as_str);
                        let mut v = match text("input") {
                            None => json!({ "error": "missing input for HMAC" }),
                            Some(input) => match compute(input) {
                                Ok(h) => json!({ "hmac": h }),
                                Err(e) => json!({ "error": e }),
                            },
                        };
                        v["reference"] = json!(text("reference").unwrap_or(""));
                        v
                    })
                    .collect();
                Ok(Reply::data(json!({ "batch_results": results }), MOUNT_TYPE))
            },
        )
    }

    fn export(&self, kind: &str, name: &str, version: &str) -> Result<Reply, ApiError> {
        if !matches!(
            kind,
            "encryption-key" | "signing-key" | "hmac-key" | "public-key" | "certificate-chain"
        ) {
            return Err(ApiError::bad(format!("invalid export type: {kind}")));
        }
        let format = self.fields.str("format").unwrap_or_default();
        if !matches!(format.as_str(), "" | "raw" | "der" | "pem") {
            return Err(ApiError::bad(format!("invalid format: {format}")));
        }
        self.with_key(
            name,
            || ApiError::NotFound,
            |p| {
                if !p.exportable && !matches!(kind, "public-key" | "certificate-chain") {
                    return Err(ApiError::bad("private key material is not exportable"));
                }
                match kind {
                    "signing-key" => {
                        return Err(ApiError::bad("signing not supported for the key"))
                    }
                    "certificate-chain" => {
                        return Err(ApiError::bad(
                            "certificate chain not supported for keys that do not support signing",
                        ))
                    }
                    _ => {}
                }
                let only = match version {
                    "" => None,
                    v => {
                        let n: i64 = if v == "latest" {
                            i64::from(p.latest_version)
                        } else {
                            let digits = v.strip_prefix('v').unwrap_or(v);
                            digits
                                .parse()
                                .map_err(|_| ApiError::bad("invalid key version"))?
                        };
                        if n < i64::from(p.min_decryption_version) {
                            return Err(ApiError::bad(
                                "version for export is below minimum decryption version",
                            ));
                        }
                        let n = u32::try_from(n).unwrap_or(u32::MAX);
                        if !p.has_version(n) {
                            return Err(ApiError::bad("version does not exist or cannot be found"));
                        }
                        Some(n)
                    }
                };
                match (kind, format.as_str()) {
                    ("public-key", _) => {
                        return Err(ApiError::Internal(format!(
                            "unknown key type {} for export type {kind}",
                            p.key_type.as_str()
                        )))
                    }
                    (_, "der" | "pem") => {
                        return Err(ApiError::Internal(
                            "unknown format for HMAC key; supported values are `` or `raw`".into(),
                        ))
                    }
                    _ => {}
                }
                let keys = p.export(kind == "hmac-key", only);
                Ok(Reply::data(
                    json!({ "name": p.name, "type": p.key_type.as_str(), "keys": keys }),
                    MOUNT_TYPE,
                ))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{approle_allows, valid_name, Op};

    #[test]
    fn names_follow_vault_regex() {
        assert!(valid_name("k"));
        assert!(valid_name("my-key.v2@x_1"));
        assert!(!valid_name(""));
        assert!(!valid_name("-k"));
        assert!(!valid_name("k-"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("clé"));
    }

    #[test]
    fn approle_policy() {
        assert!(approle_allows("encrypt/k", Op::Write));
        assert!(approle_allows("keys/k", Op::Read));
        assert!(approle_allows("keys", Op::List));
        assert!(!approle_allows("keys/k", Op::Write));
        assert!(!approle_allows("keys/k/rotate", Op::Write));
        assert!(!approle_allows("export/encryption-key/k", Op::Read));
        assert!(!approle_allows("keys/k", Op::Delete));
    }
}
