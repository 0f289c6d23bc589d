//! Compiled machine code for components, cached on disk so a restart does not pay for
//! compilation again (tens of milliseconds in release, seconds in debug builds).
//!
//! Files are keyed by the component's digest and the engine's compatibility hash (which
//! changes with the wasmtime version, its settings and the CPU features), written
//! atomically, and ignored if unreadable. The cache is `$KAFKA_TRANSIT_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/kafka-transit`, else `~/.cache/kafka-transit`; without any, or with
//! `KAFKA_TRANSIT_CACHE_DIR=off`, components are compiled at every start.
//!
//! What the cache trusts: a cached file is native code that runs as this process, and
//! wasmtime cannot tell code it compiled from code someone else wrote in its format.
//! So a file is only loaded from a directory that only this process's user can write:
//! the cache directory and its `components` directory must be owned by the effective
//! user and not writable by group or others, and so must the file; the runner creates
//! them that way (0700, files 0600). Anything else is ignored with a warning, and the
//! component is compiled in memory instead. The file name binds the code to the
//! component's SHA-256 and to the engine, so a file for another component or another
//! build is never picked up by mistake.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KAFKA_TRANSIT_CACHE_DIR") {
        if dir == "off" || dir.is_empty() {
            return None;
        }
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("kafka-transit"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/kafka-transit"))
}

/// The compiled component, from the cache or freshly compiled (and then cached).
pub fn compile(engine: &Engine, wasm: &[u8], digest: &str) -> wasmtime::Result<Component> {
    compile_in(cache_dir().as_deref(), engine, wasm, digest)
}

fn compile_in(
    dir: Option<&Path>,
    engine: &Engine,
    wasm: &[u8],
    digest: &str,
) -> wasmtime::Result<Component> {
    let Some(dir) = dir else {
        return Component::new(engine, wasm);
    };
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let file_name = format!(
        "{}-{:016x}.cwasm",
        digest.trim_start_matches("sha256:"),
        hasher.finish()
    );
    let components = dir.join("components");
    let path = components.join(file_name);

    if path.exists() {
        if let Some(why) = untrusted(&[dir, &components, &path]) {
            tracing::warn!(
                path = %path.display(),
                "ignoring the compiled-policy cache: {why}; a file someone else can write \
                 there would run as native code (fix the permissions, or set \
                 KAFKA_TRANSIT_CACHE_DIR to a directory only this user writes)"
            );
            return Component::new(engine, wasm);
        }
        // SAFETY: the file was written by this user, in a directory only this user can
        // write (checked just above), for this exact engine configuration and component
        // digest; wasmtime checks the header and version before use.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(error) => {
                tracing::debug!(path = %path.display(), "ignoring unusable compiled policy: {error}");
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    let component = Component::new(engine, wasm)?;
    if let Err(error) = store(dir, &path, &component) {
        tracing::debug!(path = %path.display(), "could not cache compiled policy: {error}");
    }
    Ok(component)
}

/// Why `paths` (directories down to a file) are not safe to load code from, if not.
#[cfg(unix)]
fn untrusted(paths: &[&Path]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for path in paths {
        let metadata = match std::fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(error) => return Some(format!("cannot inspect {}: {error}", path.display())),
        };
        if metadata.file_type().is_symlink() {
            return Some(format!("{} is a symbolic link", path.display()));
        }
        if metadata.uid() != me {
            return Some(format!(
                "{} is owned by uid {}, not this process's user ({me})",
                path.display(),
                metadata.uid()
            ));
        }
        if metadata.mode() & 0o022 != 0 {
            return Some(format!(
                "{} is writable by group or others (mode {:o})",
                path.display(),
                metadata.mode() & 0o7777
            ));
        }
    }
    None
}

#[cfg(not(unix))]
fn untrusted(_paths: &[&Path]) -> Option<String> {
    Some("file ownership cannot be checked on this platform".into())
}

fn store(root: &Path, path: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = path.parent().expect("cache files live in a directory");
    private_dir(root)?;
    private_dir(dir)?;
    if let Some(why) = untrusted(&[root, dir]) {
        anyhow::bail!("not caching: {why}");
    }
    let bytes = component.serialize()?;
    let temporary = dir.join(format!(".{}.{}", std::process::id(), rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&temporary)?, &bytes)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// Creates `dir` if needed; a directory this code creates is private to its user.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const WAT: &str = r#"(component (core module (func (export "f"))))"#;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_cache_is_private_to_the_runner_and_refused_otherwise() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let engine = engine();
        let wasm = wat::parse_str(WAT).unwrap();
        let digest = crate::policy::digest_of(&wasm);
        compile_in(Some(&dir), &engine, &wasm, &digest).unwrap();
        let components = dir.join("components");
        let file = std::fs::read_dir(&components)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&components), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(untrusted(&[&dir, &components, &file]), None);

        // A directory others may write: what is in it is not loaded.
        std::fs::set_permissions(&components, std::fs::Permissions::from_mode(0o777)).unwrap();
        let why = untrusted(&[&dir, &components, &file]).unwrap();
        assert!(why.contains("writable by group or others"), "{why}");
        // ... and a file planted there is never deserialized: the component is compiled
        // again instead (a planted file that were loaded would fail here: it is garbage).
        std::fs::write(&file, b"not machine code").unwrap();
        compile_in(Some(&dir), &engine, &wasm, &digest).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"not machine code");

        std::fs::set_permissions(&components, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(untrusted(&[&dir, &components, &file]).is_some());
        std::os::unix::fs::symlink(&file, components.join("link")).unwrap();
        assert!(untrusted(&[&components.join("link")])
            .unwrap()
            .contains("symbolic link"));
    }
}
