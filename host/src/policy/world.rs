//! The world a policy must implement, as this host was built with it: the WIT text
//! (embedded, so `kafka-transit policy wit` and `policy new` hand authors exactly the
//! contract the bindings were generated from), and what to tell an author whose
//! component does not match it. wasmtime says which name failed to link; this module
//! says what to change.

use wasmtime::component::Component;
use wasmtime::Engine;

/// `wit/policy.wit`, the file the host's bindings are generated from.
pub const WIT: &str = include_str!("../../../wit/policy.wit");

/// The WIT package this host implements, e.g. `kafka-transit:policy@0.2.0`.
pub fn package() -> &'static str {
    WIT.lines()
        .find_map(|line| line.trim().strip_prefix("package "))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("wit/policy.wit declares its package")
}

/// The interfaces of [`package`] a policy may import (`types` comes with the others).
const IMPORTABLE: &[&str] = &[
    "types",
    "transit",
    "envelope",
    "log",
    "pipeline",
    "schema-registry",
];
const IMPORTABLE_TEXT: &str = "transit, envelope, log, pipeline and schema-registry";

/// The WASI 0.2 packages the host links (`wasmtime_wasi::p2::add_to_linker_async`),
/// with no files, environment, arguments or network behind them.
const LINKED_WASI: &[&str] = &["cli", "clocks", "filesystem", "io", "random", "sockets"];

const REBUILD: &str = "rebuild it against this host's WIT (`kafka-transit policy wit` prints \
                       it; in Rust, with the kafka-transit-policy-sdk of this kafka-transit)";

/// Why `wasm` cannot be a component at all, before wasmtime tries to compile it.
pub(super) fn check_format(wasm: &[u8]) -> Result<(), String> {
    match wasm {
        [0, b'a', b's', b'm', 1, 0, 0, 0, ..] => Err(
            "this is a core WebAssembly module, not a component: build the policy with \
             `cargo build --release --target wasm32-wasip2` or `cargo component build \
             --release` (plain wasm32-wasip1 and wasm32-unknown-unknown builds are core \
             modules)"
                .into(),
        ),
        [0, b'a', b's', b'm', ..] => Ok(()),
        _ => Err(
            "this is not a WebAssembly file (it does not start with \\0asm): point \
             policy.path at the .wasm that the policy's build wrote"
                .into(),
        ),
    }
}

/// What to change, after wasmtime refused to link `component` with `error`: every name
/// the component imports or lacks that this host cannot satisfy, or else wasmtime's own
/// words with the way out.
pub(super) fn explain(engine: &Engine, component: &Component, error: &wasmtime::Error) -> String {
    let problems = problems(engine, component);
    match problems.len() {
        0 => format!(
            "{error:#}. It does not match {}'s data-policy world: {REBUILD}",
            package()
        ),
        1 => problems.into_iter().next().unwrap_or_default(),
        _ => format!("\n  - {}", problems.join("\n  - ")),
    }
}

fn problems(engine: &Engine, component: &Component) -> Vec<String> {
    let (package_name, version) = package().split_once('@').expect("the package is versioned");
    let ty = component.component_type();
    let imports: Vec<&str> = ty.imports(engine).map(|(name, _)| name).collect();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();

    // A component built against an incompatible version of the package: one message
    // for all of its names, since one rebuild fixes them all. Versions with the same
    // semver-compatible prefix (0.2.0 and 0.2.1) link: wasmtime matches them.
    let mut versions: Vec<&str> = imports
        .iter()
        .chain(&exports)
        .filter_map(|name| interface_of(name, package_name))
        .map(|(_, found)| found)
        .filter(|found| *found != version)
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let mut problems: Vec<String> = versions
        .iter()
        .filter_map(|found| {
            if !compatible(found, version) {
                Some(format!(
                    "it was built against {package_name}@{found}, but this host implements \
                     {package_name}@{version}: {REBUILD}"
                ))
            } else if newer(found, version) {
                Some(format!(
                    "it was built against {package_name}@{found}, newer than this host's \
                     {package_name}@{version}, and may use what this host does not offer: \
                     upgrade kafka-transit, or {REBUILD}"
                ))
            } else {
                None
            }
        })
        .collect();

    let policy_export = format!("{package_name}/policy@");
    if !exports.iter().any(|name| name.starts_with(&policy_export)) {
        let has = if exports.is_empty() {
            "it exports nothing".to_string()
        } else {
            format!("it exports only {}", exports.join(", "))
        };
        problems.push(format!(
            "it does not export {package_name}/policy@{version}, so the host has no \
             `init` or `transform` to call ({has}). A policy implements the data-policy \
             world: in Rust, `configured_policy!`, or `impl Policy` with \
             `export_policy!`, from kafka-transit-policy-sdk (`kafka-transit policy new` \
             writes a crate that does)"
        ));
    }

    for name in imports {
        if let Some((interface, found)) = interface_of(name, package_name) {
            if compatible(found, version) && !IMPORTABLE.contains(&interface) {
                problems.push(format!(
                    "it imports {name}, which {package_name}@{version} does not offer (a \
                     policy may import {IMPORTABLE_TEXT}): {REBUILD}"
                ));
            }
        } else if let Some(wasi) = name.strip_prefix("wasi:") {
            let wasi_package = wasi.split(['/', '@']).next().unwrap_or(wasi);
            if !LINKED_WASI.contains(&wasi_package) {
                problems.push(format!(
                    "it imports {name}, and policies are not granted wasi:{wasi_package}: a \
                     policy reaches the outside only through the host's transit, envelope \
                     and log imports. Remove what uses it (a network or HTTP client, say); \
                     the host links only wasi:{{{}}}, with no files, environment or network \
                     behind them",
                    LINKED_WASI.join(",")
                ));
            } else if !name.contains("@0.2.") {
                problems.push(format!(
                    "it imports {name}, but this host provides WASI 0.2 (preview 2): build \
                     the policy for wasm32-wasip2, or with cargo component"
                ));
            }
        } else {
            problems.push(format!(
                "it imports {name}, which this host does not provide: a policy may import \
                 only {package_name}'s {IMPORTABLE_TEXT}, and WASI 0.2"
            ));
        }
    }
    problems
}

/// Whether a component built against `found` links with this host's `version`: the
/// component model's semver compatibility (`0.2.x` with `0.2.y`, `1.x` with `1.y`).
fn compatible(found: &str, version: &str) -> bool {
    fn track(version: &str) -> Option<(u64, u64)> {
        let mut parts = version.split('.').map(|part| part.parse::<u64>().ok());
        let (major, minor) = (parts.next()??, parts.next()??);
        Some(if major == 0 { (0, minor) } else { (major, 0) })
    }
    track(found).is_some_and(|found| Some(found) == track(version))
}

/// Whether `found` is a later version than `version`.
fn newer(found: &str, version: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
    parse(found) > parse(version)
}

/// `("transit", "0.2.0")` for `kafka-transit:policy/transit@0.2.0`.
fn interface_of<'a>(name: &'a str, package_name: &str) -> Option<(&'a str, &'a str)> {
    name.strip_prefix(package_name)?
        .strip_prefix('/')?
        .split_once('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_is_read_from_the_wit() {
        assert!(
            package().starts_with("kafka-transit:policy@"),
            "{}",
            package()
        );
        assert_eq!(
            interface_of("kafka-transit:policy/transit@0.1.0", "kafka-transit:policy"),
            Some(("transit", "0.1.0"))
        );
        assert_eq!(
            interface_of("wasi:io/streams@0.2.0", "kafka-transit:policy"),
            None
        );
    }

    #[test]
    fn semver_compatible_versions_link_and_newer_ones_are_named() {
        assert!(compatible("0.2.0", "0.2.1"));
        assert!(compatible("0.2.7", "0.2.1"));
        assert!(!compatible("0.1.0", "0.2.1"));
        assert!(!compatible("0.3.0", "0.2.1"));
        assert!(compatible("1.4.0", "1.0.2"));
        assert!(!compatible("2.0.0", "1.9.0"));
        assert!(!compatible("x", "0.2.1"));
        assert!(newer("0.2.2", "0.2.1") && !newer("0.2.0", "0.2.1"));
    }

    #[test]
    fn files_that_are_not_components_are_named_for_what_they_are() {
        let core = check_format(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(core.contains("core WebAssembly module"), "{core}");
        assert!(core.contains("wasm32-wasip2"), "{core}");
        let text = check_format(b"ELF").unwrap_err();
        assert!(text.contains("not a WebAssembly file"), "{text}");
        assert!(check_format(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
