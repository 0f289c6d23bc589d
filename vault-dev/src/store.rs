//! `--data-dir` persistence: the whole [`State`] as one JSON file, rewritten
//! atomically (temporary file + rename) after every change, so a killed server
//! never leaves a half-written file behind.
//!
//! Key material is stored UNENCRYPTED: this is a development server.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::state::State;

const FILE_NAME: &str = "vault-dev-state.json";

pub struct Store {
    file: PathBuf,
}

impl Store {
    /// Use (and create if needed) a data directory.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        Ok(Self {
            file: dir.join(FILE_NAME),
        })
    }

    /// The saved state, or `None` when nothing was saved yet.
    pub fn load(&self) -> anyhow::Result<Option<State>> {
        match fs::read(&self.file) {
            Ok(bytes) => {
                let bytes = zeroize::Zeroizing::new(bytes);
                let state = serde_json::from_slice(&bytes)
                    .with_context(|| format!("cannot parse {}", self.file.display()))?;
                Ok(Some(state))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.file.display())),
        }
    }

    /// Write the state atomically.
    pub fn save(&self, state: &State) -> anyhow::Result<()> {
        let bytes = zeroize::Zeroizing::new(serde_json::to_vec(state)?);
        let tmp = self.file.with_extension("json.tmp");
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &self.file)
            .with_context(|| format!("cannot replace {}", self.file.display()))?;
        Ok(())
    }
}
