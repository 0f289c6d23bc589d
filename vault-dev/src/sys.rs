//! `sys/*`: health, seal/unseal, the mount and auth tables, and the vault-dev-only
//! `sys/dev/faults` and `sys/dev/stats` control endpoints.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::fields::Fields;
use crate::http::{ApiError, Op, Reply, Request};
use crate::server::Shared;
use crate::state::Mount;

/// Version string reported by health and seal status.
pub const VERSION: &str = concat!("1.18.0+vault-dev.", env!("CARGO_PKG_VERSION"));

/// Mount paths Vault reserves.
const RESERVED: [&str; 4] = ["sys", "auth", "cubbyhole", "identity"];

/// `GET sys/health` (no token): 200 active, 503 sealed. A sealed server reports
/// itself as standby, with unknown replication modes and no cluster.
pub(crate) fn health(shared: &Shared) -> Reply {
    let sealed = shared.faults.is_sealed();
    let mut body = json!({
        "initialized": true,
        "sealed": sealed,
        "standby": sealed,
        "performance_standby": false,
        "replication_performance_mode": if sealed { "unknown" } else { "disabled" },
        "replication_dr_mode": if sealed { "unknown" } else { "disabled" },
        "server_time_utc": crate::keys::now_ms() / 1000,
        "version": VERSION,
        "enterprise": false,
    });
    if !sealed {
        body["cluster_name"] = json!("vault-dev-cluster");
        body["cluster_id"] = json!(shared.cluster_id);
    }
    Reply::raw(if sealed { 503 } else { 200 }, body)
}

/// `GET sys/seal-status` (no token).
pub(crate) fn seal_status(shared: &Shared) -> Reply {
    Reply::raw(
        200,
        json!({
            "type": "shamir",
            "initialized": true,
            "sealed": shared.faults.is_sealed(),
            "t": 1,
            "n": 1,
            "progress": 0,
            "nonce": "",
            "version": VERSION,
            "build_date": "",
            "migration": false,
            "cluster_name": "vault-dev-cluster",
            "cluster_id": shared.cluster_id,
            "recovery_seal": false,
            "storage_type": "inmem",
        }),
    )
}

/// `PUT sys/unseal` (no token): any `key`, or `reset: true`, unseals — there are
/// no real key shares in a development server.
pub(crate) fn unseal(shared: &Shared, req: &Request) -> Result<Reply, ApiError> {
    if req.op != Op::Write {
        return Err(ApiError::MethodNotAllowed);
    }
    let f = Fields(&req.body);
    let key = f.str("key").unwrap_or_default();
    let reset = f.bool("reset").unwrap_or(false);
    if key.is_empty() && !reset {
        return Err(ApiError::bad(
            "'key' must be specified in request body as JSON, or 'reset' set to true",
        ));
    }
    shared.faults.unseal();
    Ok(seal_status(shared))
}

/// `POST sys/capabilities-self` (any token, as Vault's default policy allows): the
/// caller's capabilities on each of `paths` (a list or a comma-separated string; `path`
/// is the older spelling), in `data` and, as Vault also answers, at the top level. The
/// root token has `root` everywhere; a login token what vault-dev lets it do, since there
/// is no policy language here: the transit operations of [`crate::transit::approle_allows`],
/// and its own lookup, renewal and this check (Vault's default policy).
pub(crate) fn capabilities_self(shared: &Shared, req: &Request) -> Result<Reply, ApiError> {
    if req.op != Op::Write {
        return Err(ApiError::UnsupportedOperation);
    }
    let f = Fields(&req.body);
    let paths = f
        .comma_list("paths")
        .or_else(|| f.comma_list("path"))
        .unwrap_or_default();
    if paths.is_empty() {
        return Err(ApiError::bad("paths must be supplied"));
    }
    let mut data = Map::new();
    for path in &paths {
        let granted: Vec<&str> = if req.caller == Caller::Root {
            vec!["root"]
        } else {
            login_capabilities(shared, path.trim_start_matches('/'))
        };
        data.insert(path.clone(), json!(granted));
    }
    if paths.len() == 1 {
        data.insert("capabilities".into(), data[&paths[0]].clone());
    }
    let mut reply = Reply::data(Value::Object(data.clone()), "system");
    if let Some(Value::Object(body)) = &mut reply.body {
        body.extend(data);
    }
    Ok(reply)
}

fn login_capabilities(shared: &Shared, path: &str) -> Vec<&'static str> {
    match path {
        "auth/token/lookup-self" => return vec!["read"],
        "auth/token/renew-self" | "sys/capabilities-self" => return vec!["update"],
        _ => {}
    }
    let Some((_, sub)) = shared.read_state().find_mount(path) else {
        return vec!["deny"];
    };
    let granted: Vec<&str> = [
        (Op::Write, "update"),
        (Op::Read, "read"),
        (Op::List, "list"),
    ]
    .into_iter()
    .filter(|(op, _)| crate::transit::approle_allows(sub, *op))
    .map(|(_, name)| name)
    .collect();
    if granted.is_empty() {
        vec!["deny"]
    } else {
        granted
    }
}

/// Token-protected `sys/*` paths; all root-only.
pub(crate) fn route(shared: &Shared, rest: &str, req: &Request) -> Result<Reply, ApiError> {
    if req.caller != Caller::Root {
        return Err(ApiError::PolicyDenied);
    }
    match (rest, req.op) {
        ("seal", Op::Write) => {
            shared.faults.seal();
            Ok(Reply::no_content())
        }
        // Vault's hand-written handler answers other methods with `errors: []`.
        ("seal", _) => Err(ApiError::MethodNotAllowed),
        // Vault lists `<path>/`, which no sys path here matches.
        (_, Op::List) => Err(ApiError::UnsupportedPath),
        ("mounts", Op::Read) => Ok(list_mounts(shared)),
        ("auth", Op::Read) => Ok(list_auth(shared)),
        ("dev/faults", Op::Write) => dev_faults(shared, &req.body),
        ("dev/stats", Op::Read) => Ok(Reply::data(
            serde_json::to_value(shared.counters.snapshot()).unwrap_or(Value::Null),
            "system",
        )),
        ("mounts" | "auth" | "dev/faults" | "dev/stats", _) => Err(ApiError::UnsupportedOperation),
        _ => match (rest.strip_prefix("mounts/"), rest.strip_prefix("auth/")) {
            (Some(path), _) => mount_op(shared, path.trim_matches('/'), req),
            (_, Some(path)) => auth_op(shared, path.trim_matches('/'), req),
            _ => Err(ApiError::UnsupportedPath),
        },
    }
}

fn mount_json(m: &Mount) -> Map<String, Value> {
    let version = VERSION.split('+').next().unwrap_or(VERSION);
    let v = json!({
        "type": m.mount_type,
        "description": "",
        "accessor": m.accessor,
        "uuid": m.uuid,
        "config": { "default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false },
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
        "options": null,
        "deprecation_status": "supported",
        "plugin_version": "",
        "running_plugin_version": format!("v{version}+builtin.vault"),
        "running_sha256": "",
    });
    match v {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A `sys/*` reply: like Vault, the data is repeated at the top level (the form of
/// the API before it had an envelope).
fn system_reply(data: Map<String, Value>) -> Reply {
    let mut reply = Reply::data(Value::Object(data.clone()), "system");
    if let Some(Value::Object(body)) = reply.body.as_mut() {
        for (k, v) in data {
            body.entry(k).or_insert(v);
        }
    }
    reply
}

fn list_mounts(shared: &Shared) -> Reply {
    let state = shared.read_state();
    let mounts: Map<String, Value> = state
        .mounts
        .iter()
        .map(|(p, m)| (format!("{p}/"), Value::Object(mount_json(m))))
        .collect();
    system_reply(mounts)
}

/// Vault refuses a mount (or auth method) inside, or containing, another one.
pub(crate) fn check_path_free<'a>(
    mut existing: impl Iterator<Item = &'a String>,
    path: &str,
) -> Result<(), ApiError> {
    match existing.find(|m| {
        m.as_str() == path
            || path.starts_with(&format!("{m}/"))
            || m.starts_with(&format!("{path}/"))
    }) {
        Some(m) => Err(ApiError::bad(format!("path is already in use at {m}/"))),
        None => Ok(()),
    }
}

/// The `type` of a mount or auth method to enable.
fn backend_type(req: &Request) -> Result<String, ApiError> {
    let kind = Fields(&req.body).str("type").unwrap_or_default();
    if kind.is_empty() {
        return Err(ApiError::bad("backend type must be specified as a string"));
    }
    Ok(kind)
}

fn mount_op(shared: &Shared, path: &str, req: &Request) -> Result<Reply, ApiError> {
    if path.is_empty() {
        return Err(ApiError::UnsupportedPath);
    }
    match req.op {
        Op::Write => {
            let kind = backend_type(req)?;
            let first = path.split('/').next().unwrap_or_default();
            if RESERVED.contains(&first) {
                return Err(ApiError::bad(format!("cannot mount \"{path}/\"")));
            }
            shared.mutate(|state| {
                check_path_free(state.mounts.keys(), path)?;
                if kind != "transit" {
                    return Err(ApiError::bad(format!(
                        "vault-dev only implements the transit secrets engine; cannot mount type \"{kind}\" at {path}/"
                    )));
                }
                state.mounts.insert(path.to_string(), Mount::transit());
                Ok(())
            })?;
            Ok(Reply::no_content())
        }
        Op::Delete => {
            shared.mutate(|state| {
                state.mounts.remove(path);
                Ok(())
            })?;
            Ok(Reply::no_content())
        }
        Op::Read => {
            let state = shared.read_state();
            let m = state
                .mounts
                .get(path)
                .ok_or_else(|| ApiError::bad(format!("No secret engine mount at {path}/")))?;
            Ok(system_reply(mount_json(m)))
        }
        Op::List => Err(ApiError::UnsupportedPath),
    }
}

/// `sys/auth`: the fixed `token/` and `approle/` methods and the enabled jwt ones.
fn list_auth(shared: &Shared) -> Reply {
    let fixed = |kind: &str| {
        json!({
            "type": kind,
            "accessor": format!("auth_{kind}_vaultdev"),
            "description": "",
            "local": false,
            "seal_wrap": false,
            "config": { "default_lease_ttl": 0, "max_lease_ttl": 0, "token_type": "default-service" },
        })
    };
    let mut table = shared.jwt().table();
    table.insert("token/".into(), fixed("token"));
    table.insert("approle/".into(), fixed("approle"));
    system_reply(table)
}

/// `sys/auth/<path>`: enable (`type` jwt) or disable an auth method.
fn auth_op(shared: &Shared, path: &str, req: &Request) -> Result<Reply, ApiError> {
    if path.is_empty() {
        return Err(ApiError::UnsupportedPath);
    }
    match req.op {
        Op::Write => {
            let kind = backend_type(req)?;
            shared.jwt().enable(path, &kind)?;
            Ok(Reply::no_content())
        }
        Op::Delete => {
            shared.jwt().disable(path);
            Ok(Reply::no_content())
        }
        Op::Read | Op::List => Err(ApiError::UnsupportedOperation),
    }
}

fn dev_faults(shared: &Shared, body: &Map<String, Value>) -> Result<Reply, ApiError> {
    let faults = &shared.faults;
    let f = Fields(body);
    if f.bool("clear").unwrap_or(false) {
        faults.clear();
    }
    let count = |name: &str| -> Result<Option<u32>, ApiError> {
        f.int(name)
            .map(|n| u32::try_from(n).map_err(|_| ApiError::bad(format!("{name} must be >= 0"))))
            .transpose()
    };
    if let Some(n) = count("fail_next")? {
        let status = f.int("fail_status").unwrap_or(500);
        if !(100..=599).contains(&status) {
            return Err(ApiError::bad("fail_status must be an HTTP status code"));
        }
        faults.fail_next(n, status as u16);
    }
    if let Some(n) = count("rate_limit_next")? {
        let retry_after = count("retry_after")?.map(|s| Duration::from_secs(u64::from(s)));
        faults.rate_limit_next(n, retry_after);
    }
    if let Some(ms) = count("latency_ms")? {
        faults.set_latency(Duration::from_millis(u64::from(ms)));
    }
    if let Some(sealed) = f.bool("sealed") {
        if sealed {
            faults.seal();
        } else {
            faults.unseal();
        }
    }
    Ok(Reply::no_content())
}
