//! Builds the built-in policies in `../guest` for wasm32-wasip2 and embeds them, so
//! `kafka-transit demo` and `policy.builtin = "..."` work with no separate build step.
//!
//! The guests are a separate cargo workspace compiled by a nested cargo with its own
//! target directory (so it never waits on the outer build's lock).
//!
//! It also embeds the policy SDK's sources (and those of the three crates it uses), which
//! `kafka-transit policy new` writes into a new policy crate (see `scaffold.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every component in guest/. All are copied to OUT_DIR; `policy::builtin` embeds the
/// production ones, and tests load `fault-test` from OUT_DIR by path.
const POLICIES: &[&str] = &[
    "passthrough",
    "encrypt-value",
    "decrypt-value",
    "encrypt-fields",
    "decrypt-fields",
    "encrypt-schema-fields",
    "decrypt-schema-fields",
    "envelope-seal",
    "envelope-open",
    "rewrap-value",
    "rewrap-fields",
    "rewrap-schema-fields",
    "envelope-rewrap",
    "fault-test",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let guest_dir = manifest_dir.join("../guest");
    let wit_dir = manifest_dir.join("../wit");
    for dir in [&guest_dir, &wit_dir] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    // Cargo only watches directory mtimes shallowly; list the sources explicitly.
    watch_tree(&guest_dir);

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    embed_sdk_sources(&manifest_dir.join(".."), &out_dir);
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: share <target>/wasm-guests
    // across profiles so debug and release builds compile the guests once.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm-guests"))
        .unwrap_or_else(|| out_dir.join("wasm-guests"));

    ensure_wasm_target();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&guest_dir)
        .args([
            "build",
            "--release",
            // guest/Cargo.lock is committed: build exactly what it pins, never a newer
            // dependency resolved at build time.
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for policy in POLICIES {
        command.args(["--package", policy]);
    }
    // The outer build's settings are for the host, not for wasm guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("could not run cargo to build the policies in guest/");
    assert!(
        status.success(),
        "building guest/ for wasm32-wasip2 failed; is the target installed? \
         (`rustup target add wasm32-wasip2`, or let rust-toolchain.toml do it)"
    );

    let built = target_dir.join("wasm32-wasip2/release");
    for policy in POLICIES {
        let file = format!("{}.wasm", policy.replace('-', "_"));
        std::fs::copy(built.join(&file), out_dir.join(&file))
            .unwrap_or_else(|e| panic!("copying {file}: {e}"));
    }
}

/// rust-toolchain.toml lists wasm32-wasip2, but rustup installs listed targets only
/// with a toolchain it installs itself: on a machine that already had stable, add the
/// target here so `cargo run -p kafka-transit -- demo` needs no other step.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if sysroot.is_some_and(|root| root.join("lib/rustlib/wasm32-wasip2").is_dir()) {
        return;
    }
    println!(
        "cargo:warning=adding the wasm32-wasip2 target with rustup, to build the built-in policies"
    );
    match Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
    {
        Ok(status) if status.success() => {}
        _ => println!(
            "cargo:warning=could not add wasm32-wasip2; run `rustup target add wasm32-wasip2`"
        ),
    }
}

/// The crates a policy author needs besides crates.io, as a checkout holds them: the
/// policy SDK and the two crates it depends on by path. `OUT_DIR/sdk_sources.rs` lists
/// each file (its path from the repository root, its bytes), so the SDK's own path
/// dependencies (`../../names`) resolve unchanged wherever the three are written together.
const SDK_CRATES: &[(&str, &[&str])] = &[
    ("guest/sdk", &["Cargo.toml", "README.md", "wit/policy.wit"]),
    ("names", &["Cargo.toml"]),
    ("envelope-format", &["Cargo.toml"]),
    ("schema-fields", &["Cargo.toml"]),
];

fn embed_sdk_sources(repo: &Path, out_dir: &Path) {
    let mut files = Vec::new();
    for (dir, listed) in SDK_CRATES {
        files.extend(listed.iter().map(|file| format!("{dir}/{file}")));
        rust_sources(repo, &format!("{dir}/src"), &mut files);
    }
    files.sort();
    let mut code = String::from("&[\n");
    for file in &files {
        let path = repo
            .join(file)
            .canonicalize()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        println!("cargo:rerun-if-changed={}", path.display());
        code += &format!(
            "    ({file:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        );
    }
    code += "]\n";
    std::fs::write(out_dir.join("sdk_sources.rs"), code).expect("writing sdk_sources.rs");
}

/// Every `.rs` file under `repo/dir`, as paths from `repo`.
fn rust_sources(repo: &Path, dir: &str, files: &mut Vec<String>) {
    let entries = std::fs::read_dir(repo.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{dir}/{name}");
        if entry.path().is_dir() {
            rust_sources(repo, &path, files);
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
}

fn watch_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == "bindings.rs" {
            continue;
        }
        if path.is_dir() {
            watch_tree(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
