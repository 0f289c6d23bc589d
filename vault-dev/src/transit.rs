//! The transit secrets engine's HTTP surface: keys, encrypt/decrypt/rewrap (single
//! and batch), data keys, HMAC and export. Crypto lives in [`crate::keys`].

use std::time::Duration;

use rand::RngCore;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::auth::Caller;
use crate::gobase64;
use crate::http::{
    get_bool, get_duration_secs, get_int, get_str, value_as_int, ApiError, Op, Reply, Request,
};
use crate::keys::{CipherCache, CreateOptions, HmacAlgorithm, KeyError, KeyPolicy, KeyType};
use crate::server::Shared;

const MOUNT_TYPE: &str = "transit";

/// Vault's `GenericNameRegex`: `\w(([\w-.@]+)?\w)?`.
fn valid_name(name: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut chars = name.chars();
    let (Some(first), Some(last)) = (chars.next(), name.chars().last()) else {
        return false;
    };
    word(first)
        && word(last)
        && name
            .chars()
            .all(|c| word(c) || matches!(c, '-' | '.' | '@'))
}

/// Route a request inside a transit mount. `sub` is the path after the mount.
pub(crate) fn handle(
    shared: &Shared,
    mount: &str,
    sub: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let segs: Vec<&str> = sub.split('/').collect();
    let ctx = Ctx { shared, mount, req };
    // AppRole tokens get data operations and key reads only.
    let root_only = || {
        if req.caller == Caller::Root {
            Ok(())
        } else {
            Err(ApiError::PolicyDenied)
        }
    };
    let op = req.op;
    match segs.as_slice() {
        ["keys"] | ["keys", ""] => match op {
            Op::List => ctx.list_keys(),
            _ => Err(ApiError::UnsupportedOperation),
        },
        ["keys", name] if valid_name(name) => match op {
            Op::Read => ctx.read_key(name),
            Op::Write => root_only().and_then(|_| ctx.create_key(name)),
            Op::Delete => root_only().and_then(|_| ctx.delete_key(name)),
            Op::List => Err(ApiError::UnsupportedOperation),
        },
        ["keys", name, action @ ("config" | "rotate")] if valid_name(name) => {
            root_only()?;
            if op != Op::Write {
                return Err(ApiError::UnsupportedOperation);
            }
            if *action == "config" {
                ctx.config_key(name)
            } else {
                ctx.rotate_key(name)
            }
        }
        [action @ ("encrypt" | "decrypt" | "rewrap"), name] if valid_name(name) => {
            if op != Op::Write {
                return Err(ApiError::UnsupportedOperation);
            }
            match *action {
                "encrypt" => ctx.encrypt(name),
                "decrypt" => ctx.decrypt(name),
                _ => ctx.rewrap(name),
            }
        }
        ["datakey", kind, name] if valid_name(name) => {
            if op != Op::Write {
                return Err(ApiError::UnsupportedOperation);
            }
            ctx.datakey(kind, name)
        }
        ["hmac", name, rest @ ..] if valid_name(name) && rest.len() <= 1 => {
            if op != Op::Write {
                return Err(ApiError::UnsupportedOperation);
            }
            ctx.hmac(name, rest.first().copied())
        }
        ["export", kind, name, rest @ ..] if valid_name(name) && rest.len() <= 1 => {
            root_only()?;
            if op != Op::Read {
                return Err(ApiError::UnsupportedOperation);
            }
            ctx.export(kind, name, rest.first().copied())
        }
        _ => Err(ApiError::UnsupportedPath),
    }
}

/// One batch item (or the single request as an item).
struct Item {
    text: Option<String>,
    context: String,
    aad: String,
    key_version: i64,
    reference: Value,
}

fn parse_error(i: usize, field: &str, v: &Value) -> String {
    let go_type = match v {
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
        _ => "string",
    };
    format!("'[{i}].{field}' expected type 'string', got unconvertible type '{go_type}'")
}

/// Items of `batch_input`, or the single request; `bool` says whether it was a batch.
fn read_items(
    body: &Map<String, Value>,
    field: &str,
    missing: &str,
) -> Result<(Vec<Item>, bool), ApiError> {
    match body.get("batch_input") {
        None | Some(Value::Null) => {
            let text = get_str(body, field)?.ok_or_else(|| ApiError::bad(missing))?;
            Ok((
                vec![Item {
                    text: Some(text),
                    context: get_str(body, "context")?.unwrap_or_default(),
                    aad: get_str(body, "associated_data")?.unwrap_or_default(),
                    key_version: get_int(body, "key_version")?.unwrap_or(0),
                    reference: Value::Null,
                }],
                false,
            ))
        }
        Some(Value::Array(raw)) => {
            if raw.is_empty() {
                return Err(ApiError::bad("missing batch input to process"));
            }
            let mut errors = Vec::new();
            let mut items = Vec::with_capacity(raw.len());
            for (i, v) in raw.iter().enumerate() {
                let Value::Object(o) = v else {
                    errors.push(format!("'[{i}]' expected a map, got '{v}'"));
                    continue;
                };
                let mut string = |name: &str| match o.get(name) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => {
                        errors.push(parse_error(i, name, other));
                        None
                    }
                };
                let text = string(field);
                let context = string("context").unwrap_or_default();
                let aad = string("associated_data").unwrap_or_default();
                let key_version = match value_as_int("key_version", o.get("key_version")) {
                    Ok(v) => v.unwrap_or(0),
                    Err(_) => {
                        errors.push(format!("'[{i}].key_version' expected type 'int'"));
                        0
                    }
                };
                let reference = match o.get("reference") {
                    None | Some(Value::Null) => json!(""),
                    Some(r) => r.clone(),
                };
                items.push(Item {
                    text,
                    context,
                    aad,
                    key_version,
                    reference,
                });
            }
            if !errors.is_empty() {
                // Vault returns this as an internal error.
                return Err(ApiError::Internal(format!(
                    "failed to parse batch input: {}",
                    errors.join("; ")
                )));
            }
            Ok((items, true))
        }
        Some(_) => Err(ApiError::Internal(
            "failed to parse batch input: 'batch_input' expected a list".into(),
        )),
    }
}

/// An item after base64 decoding.
struct Prepared {
    text: Zeroizing<Vec<u8>>,
    context: Vec<u8>,
    aad: Vec<u8>,
    key_version: i64,
}

fn decode(text: &str) -> Result<Vec<u8>, String> {
    gobase64::decode(text).map_err(|e| e.to_string())
}

/// Decode the base64 fields; `text_is_b64` is false for ciphertexts (kept as text).
fn prepare(item: &Item, text_is_b64: bool) -> Result<Prepared, String> {
    let raw = item.text.clone().unwrap_or_default();
    let text = if text_is_b64 {
        Zeroizing::new(decode(&raw)?)
    } else {
        Zeroizing::new(raw.into_bytes())
    };
    Ok(Prepared {
        text,
        context: decode(&item.context)?,
        aad: decode(&item.aad)?,
        key_version: item.key_version,
    })
}

/// Split key errors: user errors stay per item, internal ones abort the request.
fn per_item<T>(r: Result<T, KeyError>) -> Result<Result<T, String>, ApiError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(KeyError::User(m)) => Ok(Err(m)),
        Err(KeyError::Internal(m)) => Err(ApiError::Internal(m)),
    }
}

/// Vault's batch status rule: any failed item -> 400 (envelope intact, no `errors`),
/// or `partial_failure_response_code` when some item succeeded.
fn batch_reply(
    results: Vec<Value>,
    any_ok: bool,
    any_err: bool,
    body: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let mut reply = Reply::data(json!({ "batch_results": results }), MOUNT_TYPE);
    if any_err {
        let mut status = 400;
        let mut warnings = Vec::new();
        if let (true, Some(code)) = (any_ok, get_int(body, "partial_failure_response_code")?) {
            if (1..=599).contains(&code) {
                status = code as u16;
            } else {
                warnings.push(format!(
                    "invalid HTTP response code override from partial_failure_response_code, reverting to {status}"
                ));
            }
        }
        reply = reply.with_status(status).with_warnings(warnings);
    }
    Ok(reply)
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

struct Ctx<'a> {
    shared: &'a Shared,
    mount: &'a str,
    req: &'a Request,
}

impl Ctx<'_> {
    fn body(&self) -> &Map<String, Value> {
        &self.req.body
    }

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

    /// Run `f` on a key under the read lock. A missing key is created from
    /// `create` when given (encrypt's upsert), else it is `missing`.
    fn with_key<T>(
        &self,
        name: &str,
        create: Option<&dyn Fn() -> Result<CreateOptions, ApiError>>,
        missing: impl FnOnce() -> ApiError,
        f: impl FnOnce(&KeyPolicy) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        {
            let state = self.shared.read_state();
            let mount = state.mounts.get(self.mount).ok_or_else(|| self.gone())?;
            if let Some(p) = mount.keys.get(name) {
                return f(p);
            }
        }
        let Some(create) = create else {
            return Err(missing());
        };
        let opts = create()?;
        self.shared.mutate(|state| {
            let mount = state
                .mounts
                .get_mut(self.mount)
                .ok_or_else(|| self.gone())?;
            mount
                .keys
                .entry(name.to_string())
                .or_insert_with(|| KeyPolicy::new(name, &opts));
            Ok(())
        })?;
        let state = self.shared.read_state();
        let p = state
            .mounts
            .get(self.mount)
            .and_then(|m| m.keys.get(name))
            .ok_or_else(missing)?;
        f(p)
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
        let state = self.shared.read_state();
        let mount = state.mounts.get(self.mount).ok_or_else(|| self.gone())?;
        if mount.keys.is_empty() {
            return Err(ApiError::NotFound);
        }
        let keys: Vec<&String> = mount.keys.keys().collect();
        Ok(Reply::data(json!({ "keys": keys }), MOUNT_TYPE))
    }

    fn read_key(&self, name: &str) -> Result<Reply, ApiError> {
        self.with_key(
            name,
            None,
            || ApiError::NotFound,
            |p| Ok(Reply::data(p.to_json(), MOUNT_TYPE)),
        )
    }

    fn create_key(&self, name: &str) -> Result<Reply, ApiError> {
        let body = self.body();
        let derived = get_bool(body, "derived")?.unwrap_or(false);
        let convergent = get_bool(body, "convergent_encryption")?.unwrap_or(false);
        let auto_rotate = get_duration_secs(body, "auto_rotate_period")?.unwrap_or(0);
        self.check_auto_rotate(auto_rotate)?;
        if convergent && !derived {
            return Err(ApiError::bad(
                "convergent encryption requires derivation to be enabled",
            ));
        }
        let type_name = get_str(body, "type")?.unwrap_or_else(|| "aes256-gcm96".into());
        let key_type = KeyType::parse(&type_name).map_err(ApiError::BadRequest)?;
        let opts = CreateOptions {
            key_type,
            derived,
            convergent,
            exportable: get_bool(body, "exportable")?.unwrap_or(false),
            allow_plaintext_backup: get_bool(body, "allow_plaintext_backup")?.unwrap_or(false),
            auto_rotate_period_secs: auto_rotate,
        };
        self.shared.mutate(|state| {
            let mount = state
                .mounts
                .get_mut(self.mount)
                .ok_or_else(|| self.gone())?;
            // An existing key is returned unchanged, with Vault's warning.
            let mut warnings = Vec::new();
            if mount.keys.contains_key(name) {
                warnings.push(format!("key {name} already existed"));
            }
            let p = mount
                .keys
                .entry(name.to_string())
                .or_insert_with(|| KeyPolicy::new(name, &opts));
            Ok(Reply::data(p.to_json(), MOUNT_TYPE).with_warnings(warnings))
        })
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
        let body = self.body();
        let min_dec = get_int(body, "min_decryption_version")?;
        let min_enc = get_int(body, "min_encryption_version")?;
        let deletion_allowed = get_bool(body, "deletion_allowed")?;
        let exportable = get_bool(body, "exportable")?;
        let plaintext_backup = get_bool(body, "allow_plaintext_backup")?;
        let auto_rotate = get_duration_secs(body, "auto_rotate_period")?;
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
                    warnings.push(
                        "since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1".to_string(),
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

    fn encrypt(&self, name: &str) -> Result<Reply, ApiError> {
        let body = self.body();
        let (items, batch) = read_items(body, "plaintext", "missing plaintext to encrypt")?;
        let context_set = !items[0].context.is_empty();
        if items.iter().any(|i| i.context.is_empty() == context_set) {
            return Err(ApiError::bad(
                "context should be set either in all the request blocks or in none",
            ));
        }
        let prepared: Vec<Result<Prepared, String>> =
            items.iter().map(|i| prepare(i, true)).collect();
        self.shared.counters.add_items(items.len());

        // Like Vault with a permissive policy: encrypting with a missing key creates it.
        let create = || -> Result<CreateOptions, ApiError> {
            let convergent = get_bool(body, "convergent_encryption")?.unwrap_or(false);
            if convergent && !context_set {
                return Err(ApiError::bad(
                    "convergent encryption requires derivation to be enabled, so context is required",
                ));
            }
            let type_name = get_str(body, "type")?.unwrap_or_else(|| "aes256-gcm96".into());
            Ok(CreateOptions {
                key_type: KeyType::parse(&type_name).map_err(ApiError::BadRequest)?,
                derived: context_set,
                convergent,
                ..CreateOptions::default()
            })
        };
        let results = self.with_key(
            name,
            Some(&create),
            || ApiError::bad("encryption key not found"),
            |p| {
                let mut cache = CipherCache::default();
                prepared
                    .iter()
                    .map(|item| match item {
                        Err(e) => Ok(Err(e.clone())),
                        Ok(it) => per_item(p.encrypt(
                            it.key_version,
                            &it.context,
                            &it.text,
                            &it.aad,
                            &mut cache,
                        )),
                    })
                    .collect::<Result<Vec<_>, ApiError>>()
            },
        )?;
        self.ciphertext_reply(batch, results, &items)
    }

    /// The reply of encrypt and rewrap: one ciphertext, or one per batch item.
    fn ciphertext_reply(
        &self,
        batch: bool,
        results: Vec<Result<(String, u32), String>>,
        items: &[Item],
    ) -> Result<Reply, ApiError> {
        if !batch {
            let (ciphertext, version) = results
                .into_iter()
                .next()
                .unwrap_or(Err(String::new()))
                .map_err(ApiError::BadRequest)?;
            return Ok(Reply::data(
                json!({ "ciphertext": ciphertext, "key_version": version }),
                MOUNT_TYPE,
            ));
        }
        self.batch_results(
            results,
            items,
            |(ct, v)| json!({ "ciphertext": ct, "key_version": v }),
        )
    }

    fn batch_results<T>(
        &self,
        results: Vec<Result<T, String>>,
        items: &[Item],
        ok: impl Fn(T) -> Value,
    ) -> Result<Reply, ApiError> {
        let (mut any_ok, mut any_err) = (false, false);
        let out: Vec<Value> = results
            .into_iter()
            .zip(items)
            .map(|(r, item)| {
                let mut v = match r {
                    Ok(t) => {
                        any_ok = true;
                        ok(t)
                    }
                    Err(e) => {
                        any_err = true;
                        json!({ "error": e })
                    }
                };
                v["reference"] = item.reference.clone();
                v
            })
            .collect();
        batch_reply(out, any_ok, any_err, self.body())
    }

    fn decrypt(&self, name: &str) -> Result<Reply, ApiError> {
        let (items, batch) =
            read_items(self.body(), "ciphertext", "missing ciphertext to decrypt")?;
        let prepared: Vec<Result<Prepared, String>> =
            items.iter().map(|i| prepare(i, false)).collect();
        self.shared.counters.add_items(items.len());
        let results = self.with_key(
            name,
            None,
            || ApiError::bad("encryption key not found"),
            |p| {
                let mut cache = CipherCache::default();
                prepared
                    .iter()
                    .map(|item| match item {
                        Err(e) => Ok(Err(e.clone())),
                        Ok(it) => {
                            let text = String::from_utf8_lossy(&it.text);
                            per_item(
                                p.decrypt(&text, &it.context, &it.aad, &mut cache)
                                    .map(|pt| gobase64::encode(&pt)),
                            )
                        }
                    })
                    .collect::<Result<Vec<_>, ApiError>>()
            },
        )?;
        if !batch {
            let plaintext = results
                .into_iter()
                .next()
                .unwrap_or(Err(String::new()))
                .map_err(ApiError::BadRequest)?;
            return Ok(Reply::data(json!({ "plaintext": plaintext }), MOUNT_TYPE));
        }
        self.batch_results(results, &items, |pt| json!({ "plaintext": pt }))
    }

    fn rewrap(&self, name: &str) -> Result<Reply, ApiError> {
        let (items, batch) =
            read_items(self.body(), "ciphertext", "missing ciphertext to decrypt")?;
        let prepared: Vec<Result<Prepared, String>> =
            items.iter().map(|i| prepare(i, false)).collect();
        self.shared.counters.add_items(items.len());
        let results = self.with_key(
            name,
            None,
            || ApiError::bad("encryption key not found"),
            |p| {
                let mut cache = CipherCache::default();
                prepared
                    .iter()
                    .map(|item| match item {
                        Err(e) => Ok(Err(e.clone())),
                        Ok(it) => {
                            let text = String::from_utf8_lossy(&it.text);
                            per_item(p.decrypt(&text, &it.context, &it.aad, &mut cache).and_then(
                                |pt| {
                                    p.encrypt(it.key_version, &it.context, &pt, &it.aad, &mut cache)
                                },
                            ))
                        }
                    })
                    .collect::<Result<Vec<_>, ApiError>>()
            },
        )?;
        self.ciphertext_reply(batch, results, &items)
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
        let body = self.body();
        let context = gobase64::decode(&get_str(body, "context")?.unwrap_or_default())
            .map_err(|_| ApiError::bad("failed to base64-decode context"))?;
        let key_version = get_int(body, "key_version")?.unwrap_or(0);
        let bits = get_int(body, "bits")?.unwrap_or(256);
        self.with_key(
            name,
            None,
            || ApiError::bad("encryption key not found"),
            |p| {
                let len = match bits {
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
                        b"",
                        &mut CipherCache::default(),
                    )
                    .map_err(|e| match e {
                        KeyError::User(m) => ApiError::BadRequest(m),
                        KeyError::Internal(m) => ApiError::Internal(m),
                    })?;
                let mut data = json!({ "ciphertext": ciphertext, "key_version": version });
                if include_plaintext {
                    data["plaintext"] = json!(gobase64::encode(&secret));
                }
                Ok(Reply::data(data, MOUNT_TYPE))
            },
        )
    }

    fn hmac(&self, name: &str, path_alg: Option<&str>) -> Result<Reply, ApiError> {
        let body = self.body();
        let alg_name = match path_alg {
            Some(a) => a.to_string(),
            None => match get_str(body, "algorithm")? {
                Some(a) => a,
                None => get_str(body, "hash_algorithm")?.unwrap_or_else(|| "sha2-256".into()),
            },
        };
        let requested = get_int(body, "key_version")?.unwrap_or(0);
        self.with_key(
            name,
            None,
            || ApiError::bad("encryption key not found"),
            |p| {
                let ver = p
                    .hmac_version(requested)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                let alg = HmacAlgorithm::parse(&alg_name)
                    .ok_or_else(|| ApiError::bad(format!("unsupported algorithm {alg_name:?}")))?;
                let compute = |input: &str| -> Result<String, String> {
                    let bytes = gobase64::decode(input)
                        .map_err(|e| format!("unable to decode input as base64: {e}"))?;
                    p.hmac(ver, alg, &bytes).map_err(|e| e.to_string())
                };
                match body.get("batch_input") {
                    None | Some(Value::Null) => {
                        self.shared.counters.add_items(1);
                        let input = get_str(body, "input")?
                            .ok_or_else(|| ApiError::bad("missing input for HMAC"))?;
                        let hmac = compute(&input).map_err(ApiError::BadRequest)?;
                        Ok(Reply::data(json!({ "hmac": hmac }), MOUNT_TYPE))
                    }
                    Some(Value::Array(items)) => {
                        if items.is_empty() {
                            return Err(ApiError::bad("missing batch input to process"));
                        }
                        self.shared.counters.add_items(items.len());
                        // Vault answers 200 for HMAC batches even when items fail.
                        let results: Vec<Value> = items
                            .iter()
                            .map(|item| {
                                let reference = item.get("reference").cloned().unwrap_or(json!(""));
                                let mut v = match item.get("input").and_then(Value::as_str) {
                                    None => json!({ "error": "missing input for HMAC" }),
                                    Some(input) => match compute(input) {
                                        Ok(h) => json!({ "hmac": h }),
                                        Err(e) => json!({ "error": e }),
                                    },
                                };
                                v["reference"] = reference;
                                v
                            })
                            .collect();
                        Ok(Reply::data(json!({ "batch_results": results }), MOUNT_TYPE))
                    }
                    Some(_) => Err(ApiError::Internal(
                        "failed to parse batch input: 'batch_input' expected a list".into(),
                    )),
                }
            },
        )
    }

    fn export(&self, kind: &str, name: &str, version: Option<&str>) -> Result<Reply, ApiError> {
        let hmac = match kind {
            "encryption-key" => false,
            "hmac-key" => true,
            "signing-key" | "public-key" | "certificate-chain" | "cmac-key" => false,
            _ => return Err(ApiError::bad(format!("invalid export type: {kind}"))),
        };
        self.with_key(name, None, || ApiError::NotFound, |p| {
            if !p.exportable && !matches!(kind, "public-key" | "certificate-chain") {
                return Err(ApiError::bad("private key material is not exportable"));
            }
            match kind {
                "signing-key" => return Err(ApiError::bad("signing not supported for the key")),
                "certificate-chain" => {
                    return Err(ApiError::bad(
                        "certificate chain not supported for keys that do not support signing",
                    ))
                }
                "public-key" | "cmac-key" => {
                    return Err(ApiError::Internal(format!(
                        "unknown key type {} for export type {kind}",
                        p.key_type.as_str()
                    )))
                }
                _ => {}
            }
            let only = match version {
                None | Some("") => None,
                Some("latest") => Some(p.latest_version),
                Some(v) => {
                    let n: i64 = v
                        .trim_start_matches('v')
                        .parse()
                        .map_err(|_| ApiError::bad("invalid key version"))?;
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
            Ok(Reply::data(
                json!({ "name": p.name, "type": p.key_type.as_str(), "keys": p.export(hmac, only) }),
                MOUNT_TYPE,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_follow_vault_regex() {
        assert!(valid_name("k"));
        assert!(valid_name("my-key.v2@x_1"));
        assert!(!valid_name(""));
        assert!(!valid_name("-k"));
        assert!(!valid_name("k-"));
        assert!(!valid_name("a b"));
    }
}
