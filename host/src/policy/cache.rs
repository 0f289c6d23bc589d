//! Compiled machine code for components, cached on disk so a restart does not pay for
//! compilation again (tens of milliseconds in release, seconds in debug builds).
//!
//! Files are keyed by the component's digest and the engine's compatibility hash (which
//! changes with the wasmtime version, its settings and the CPU features), written
//! atomically, and ignored if unreadable. The cache is
//! `$KAFKA_TRANSIT_CACHE_DIR`, else `$XDG_CACHE_HOME/kafka-transit`, else
//! `~/.cache/kafka-transit`; without any, components are compiled every start.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

use wasmtime::component::Component;
use wasmtime::Engine;

fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KAFKA_TRANSIT_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("kafka-transit"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/kafka-transit"))
}

/// The compiled component, from the cache or freshly compiled (and then cached).
pub fn compile(engine: &Engine, wasm: &[u8], digest: &str) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir() else {
        return Component::new(engine, wasm);
    };
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let file_name = format!(
        "{}-{:016x}.cwasm",
        digest.trim_start_matches("sha256:"),
        hasher.finish()
    );
    let path = dir.join("components").join(file_name);

    if path.exists() {
        // SAFETY: the file is one this code wrote (atomically) for this exact engine
        // configuration; wasmtime checks the header and version before using it.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(error) => {
                tracing::debug!(path = %path.display(), "ignoring unusable compiled policy: {error}");
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    let component = Component::new(engine, wasm)?;
    if let Err(error) = store(&path, &component) {
        tracing::debug!(path = %path.display(), "could not cache compiled policy: {error}");
    }
    Ok(component)
}

fn store(path: &std::path::Path, component: &Component) -> anyhow::Result<()> {
    let dir = path.parent().expect("cache files live in a directory");
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let temporary = dir.join(format!(".{}.{}", std::process::id(), rand::random::<u64>()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}
