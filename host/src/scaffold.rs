//! `kafka-transit policy`: what an author needs to write a policy outside this
//! repository. `policy new` writes a standalone crate (the SDK as a dependency, an
//! example policy with native tests, the host's own WIT, a pipeline file and a README)
//! from the templates in `host/templates/policy/`, with the SDK this binary was built
//! with in its `vendor/` (so it builds with nothing but the binary and crates.io);
//! `policy wit` prints the WIT;
//! `policy export` writes a built-in policy's component to a file, to start from.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::policy::{builtin, world};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Write a new policy crate, ready to test, build and run.
    ///
    /// Creates DIR (default: ./NAME) with Cargo.toml (a cdylib on the policy SDK,
    /// kafka-transit-policy-sdk, with the metadata cargo component reads), src/lib.rs (a
    /// working example that replaces record keys by their HMAC under a Vault transit key,
    /// with native tests against the SDK's stand-in host), wit/policy.wit (the WIT this
    /// kafka-transit implements), pipeline.toml and README.md. Refuses a DIR that exists
    /// and is not empty.
    New {
        /// The policy's name: lowercase words joined by '-', each starting with a letter
        /// (e.g. hash-keys). It names the crate, the component and the .wasm file.
        name: String,
        /// Where to create the crate [default: ./NAME].
        #[arg(long, value_name = "PATH")]
        dir: Option<PathBuf>,
        /// Depend on the SDK in this directory (guest/sdk of a kafka-transit checkout).
        /// Without it the SDK this kafka-transit was built with (and the two crates it
        /// uses) is written into the crate's vendor/: no checkout or git access needed.
        #[arg(long, value_name = "PATH")]
        sdk_path: Option<PathBuf>,
    },
    /// Print the WIT this kafka-transit implements (package kafka-transit:policy, world
    /// data-policy).
    ///
    /// A policy written in any language with a component toolchain implements this
    /// world; `kafka-transit validate` refuses a component built against another version
    /// and says what to change.
    Wit,
    /// Write a built-in policy's component (.wasm) to a file.
    ///
    /// To start from a built-in as a file: point policy.path at it and the policy can
    /// later be replaced while the pipeline runs (see docs/operations.md, "Swapping the
    /// policy while it runs"), or keep a copy to compare digests with. The file is
    /// exactly what `policy.builtin = "NAME"` runs. Overwrites FILE.
    Export {
        /// The built-in policy: passthrough, encrypt-value, decrypt-value, encrypt-fields,
        /// decrypt-fields, encrypt-schema-fields, decrypt-schema-fields, envelope-seal,
        /// envelope-open, rewrap-value, rewrap-fields, rewrap-schema-fields or
        /// envelope-rewrap.
        name: String,
        /// Where to write the component (e.g. encrypt-value.wasm).
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
    },
}

/// Why `policy new` wrote nothing.
#[derive(Debug, thiserror::Error)]
enum ScaffoldError {
    #[error(
        "policy name {0:?}: use lowercase letters and digits, in words joined by '-' that \
         each start with a letter (e.g. hash-keys); it names the crate, the component and \
         the .wasm file"
    )]
    Name(String),
    #[error("{0} already exists and is not empty: choose another --dir, or remove it first")]
    NotEmpty(PathBuf),
    #[error("{0} exists and is not a directory: choose another --dir")]
    NotADirectory(PathBuf),
    #[error(
        "--sdk-path {0}: no kafka-transit-policy-sdk crate there (give the guest/sdk \
         directory of a kafka-transit checkout)"
    )]
    NoSdk(PathBuf),
    #[error("policy export: no built-in policy {name:?} (built-in: {known})")]
    UnknownBuiltin { name: String, known: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the new crate gets the SDK from.
#[derive(Debug)]
enum Sdk {
    /// A directory holding the SDK crate (a checkout's `guest/sdk`).
    Path(PathBuf),
    /// The SDK this binary was built with, written into the crate's `vendor/`.
    Vendored,
}

/// The SDK's sources and those of the crates it uses by path (`names`,
/// `envelope-format`, `schema-fields`): (path from the repository root, bytes), embedded by build.rs.
/// Written under [`VENDOR`] as they sit in a checkout, the SDK's path dependencies
/// resolve unchanged.
const SDK_SOURCES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/sdk_sources.rs"));

/// Where `policy new` writes [`SDK_SOURCES`] in the new crate.
const VENDOR: &str = "vendor";

/// The repository the SDK lives in (host/Cargo.toml's `repository`).
const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

const SDK_NAME: &str = "kafka-transit-policy-sdk";

/// Each file of a new crate: its path in the crate and its template.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/policy/Cargo.toml.template"),
    ),
    ("src/lib.rs", include_str!("../templates/policy/src/lib.rs")),
    ("wit/policy.wit", world::WIT),
    (
        "pipeline.toml",
        include_str!("../templates/policy/pipeline.toml"),
    ),
    ("README.md", include_str!("../templates/policy/README.md")),
    (".gitignore", include_str!("../templates/policy/gitignore")),
];

pub fn run(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::New {
            name,
            dir,
            sdk_path,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let sdk = sdk_path.map_or(Sdk::Vendored, Sdk::Path);
            new(&name, &dir, &sdk)?;
            print!("{}", next_steps(&name, &dir, &sdk));
            Ok(())
        }
        PolicyCommand::Wit => {
            print!("{}", world::WIT);
            Ok(())
        }
        PolicyCommand::Export { name, output } => {
            let digest = export(&name, &output)?;
            println!("{}: built-in policy {name}, {digest}", output.display());
            Ok(())
        }
    }
}

/// Writes built-in policy `name` to `output`; returns its digest.
fn export(name: &str, output: &Path) -> Result<String, ScaffoldError> {
    let wasm = builtin::component(name).ok_or_else(|| ScaffoldError::UnknownBuiltin {
        name: name.into(),
        known: builtin::names().collect::<Vec<_>>().join(", "),
    })?;
    std::fs::write(output, wasm).map_err(|source| ScaffoldError::Write {
        path: output.to_path_buf(),
        source,
    })?;
    Ok(crate::policy::digest_of(wasm))
}

/// Writes the crate for policy `name` into `dir`, which must not exist or be empty.
fn new(name: &str, dir: &Path, sdk: &Sdk) -> Result<(), ScaffoldError> {
    if !is_valid_name(name) {
        return Err(ScaffoldError::Name(name.into()));
    }
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).map_err(|_| ScaffoldError::NotADirectory(dir.to_path_buf()))?;
        if entries.next().is_some() {
            return Err(ScaffoldError::NotEmpty(dir.to_path_buf()));
        }
    }
    let sdk_dependency = sdk_dependency(sdk)?;
    let crate_name = name.replace('-', "_");
    let values = [
        ("name", name),
        ("crate_name", &crate_name),
        ("sdk_dependency", &sdk_dependency),
        ("wit_package", world::package()),
        ("version", env!("CARGO_PKG_VERSION")),
        ("repository", REPOSITORY),
    ];
    let rendered = TEMPLATES
        .iter()
        .map(|(file, template)| (dir.join(file), render(template, &values).into_bytes()));
    let vendored: &[_] = match sdk {
        Sdk::Vendored => SDK_SOURCES,
        Sdk::Path(_) => &[],
    };
    let vendored = vendored
        .iter()
        .map(|(file, bytes)| (dir.join(VENDOR).join(file), bytes.to_vec()));
    for (path, contents) in rendered.chain(vendored) {
        let write = || {
            std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
            std::fs::write(&path, &contents)
        };
        write().map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// What `policy new` tells the author to do next.
fn next_steps(name: &str, dir: &Path, sdk: &Sdk) -> String {
    let wasm = format!(
        "target/wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    );
    let sdk = match sdk {
        Sdk::Path(path) => format!("the SDK at {}", path.display()),
        Sdk::Vendored => format!(
            "the SDK of kafka-transit {} in {VENDOR}/",
            env!("CARGO_PKG_VERSION")
        ),
    };
    format!(
        "Created policy {name} in {dir}, on {sdk}, for {package}.\n\
         \n\
         Next:\n\
         \x20 cd {dir}\n\
         \x20 cargo test                                      # its tests, natively: no Vault, no Kafka\n\
         \x20 cargo build --release --target wasm32-wasip2    # -> {wasm}\n\
         \x20 export VAULT_TOKEN=...                          # then edit pipeline.toml's addresses and topics\n\
         \x20 kafka-transit validate --config pipeline.toml   # loads, type-checks and initialises the policy\n\
         \x20 kafka-transit run --config pipeline.toml\n",
        dir = dir.display(),
        package = world::package(),
    )
}

/// Lowercase words joined by '-', each starting with a letter: a valid crate name and
/// a valid WIT package name (for cargo component).
fn is_valid_name(name: &str) -> bool {
    name.split('-').all(|word| {
        word.starts_with(|c: char| c.is_ascii_lowercase())
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

/// The `[dependencies]` line for the SDK, with a comment saying how to change it.
fn sdk_dependency(sdk: &Sdk) -> Result<String, ScaffoldError> {
    match sdk {
        Sdk::Path(path) => {
            let missing = || ScaffoldError::NoSdk(path.clone());
            let absolute = path.canonicalize().map_err(|_| missing())?;
            let manifest =
                std::fs::read_to_string(absolute.join("Cargo.toml")).map_err(|_| missing())?;
            if !manifest.contains(&format!("name = \"{SDK_NAME}\"")) {
                return Err(missing());
            }
            let path = toml::Value::String(absolute.display().to_string());
            Ok(format!(
                "# A kafka-transit checkout's SDK (`policy new --sdk-path`): builds offline.\n\
                 {SDK_NAME} = {{ path = {path} }}"
            ))
        }
        Sdk::Vendored => Ok(format!(
            "# The SDK of the kafka-transit that wrote this crate (version {version}), with\n\
             # the two crates it uses, in {VENDOR}/: it matches that host's WIT and needs no\n\
             # checkout. A newer kafka-transit brings its own: `policy new` again and copy\n\
             # {VENDOR}/ over, or use a checkout's with `path = \".../guest/sdk\"`.\n\
             {SDK_NAME} = {{ path = \"{VENDOR}/guest/sdk\" }}",
            version = env!("CARGO_PKG_VERSION"),
        )),
    }
}

/// `template` with each `{{key}}` replaced by its value.
fn render(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_writes_exactly_the_builtin_component() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("encrypt-value.wasm");
        let digest = export("encrypt-value", &output).unwrap();
        let written = std::fs::read(&output).unwrap();
        assert_eq!(written, builtin::component("encrypt-value").unwrap());
        assert_eq!(digest, crate::policy::digest_of(&written));

        let error = export("encrypt-everything", &output)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"encrypt-everything\"") && error.contains("envelope-seal"),
            "{error}"
        );
    }

    #[test]
    fn every_placeholder_has_a_value() {
        let values = [
            ("name", "n"),
            ("crate_name", "n"),
            ("sdk_dependency", "d"),
            ("wit_package", "w"),
            ("version", "v"),
            ("repository", "r"),
        ];
        for (file, template) in TEMPLATES {
            let text = render(template, &values);
            assert!(!text.contains("{{"), "{file} keeps a placeholder");
        }
    }

    #[test]
    fn the_embedded_sdk_is_the_sdk_with_the_crates_it_uses() {
        let has = |file: &str| SDK_SOURCES.iter().any(|(path, _)| *path == file);
        for file in [
            "guest/sdk/Cargo.toml",
            "guest/sdk/src/lib.rs",
            "guest/sdk/wit/policy.wit",
            "names/Cargo.toml",
            "names/src/lib.rs",
            "envelope-format/Cargo.toml",
            "envelope-format/src/lib.rs",
            "schema-fields/Cargo.toml",
            "schema-fields/src/lib.rs",
        ] {
            assert!(has(file), "{file} is not embedded");
        }
        let wit = SDK_SOURCES
            .iter()
            .find(|(path, _)| *path == "guest/sdk/wit/policy.wit")
            .map(|(_, bytes)| *bytes);
        assert_eq!(
            wit,
            Some(world::WIT.as_bytes()),
            "the SDK's WIT is the host's"
        );
    }

    #[test]
    fn names_must_suit_cargo_and_wit() {
        for good in ["hash-keys", "mask", "pii2-mask"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            "Hash",
            "hash_keys",
            "-x",
            "x-",
            "2fa",
            "a--b",
            "x-2",
            "a b",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
