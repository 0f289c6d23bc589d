//! What asks for a new policy by itself: the file at `policy.path` changing (polled,
//! through symlinks, and loaded once it has stayed the same for one more interval) and,
//! on unix, SIGHUP. The admin endpoint calls [`PolicySwitch::reload_from_config`]
//! directly.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::task::JoinHandle;

use super::{PolicySwitch, Trigger};
use crate::policy::digest_of;

/// The background triggers of [`PolicySwitch::spawn_triggers`]; dropping it stops them.
#[must_use = "the triggers stop when this is dropped"]
pub struct Triggers {
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl Drop for Triggers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(unix)]
pub(super) async fn listen_for_hangup(switch: PolicySwitch) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(
                "cannot listen for SIGHUP ({error}): reload the policy through the admin \
                 endpoint or by replacing the file at policy.path"
            );
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!(
            config = %switch.shared.config_path.display(),
            "SIGHUP: re-reading [policy]"
        );
        // Refusals are logged and counted where they happen.
        let _ = switch.reload_from_config_by(Trigger::Hangup).await;
    }
}

/// Polls the file at `policy.path` of the newest policy and reloads it when its content
/// changes, with the `[policy]` table in force.
pub(super) async fn watch_file(switch: PolicySwitch) {
    let mut watch: Option<FileWatch> = None;
    loop {
        tokio::time::sleep(switch.shared.latest().policy.watch_interval).await;
        let latest = switch.shared.latest();
        let Some(path) = &latest.policy.path else {
            watch = None;
            continue;
        };
        let watch = match &mut watch {
            Some(watch) if watch.path == *path => watch,
            other => other.insert(FileWatch::new(path.clone())),
        };
        match watch.poll(&latest.digest) {
            Poll::Quiet | Poll::Settling | Poll::Same => {}
            Poll::Missing => tracing::warn!(
                path = %path.display(),
                "policy.path is gone; the running policy stays until a file is there again"
            ),
            Poll::Unreadable(error) => tracing::warn!(
                path = %path.display(),
                "policy.path changed but cannot be read ({error}); the running policy stays"
            ),
            Poll::Changed { digest } => {
                tracing::info!(path = %path.display(), digest, "policy.path has new content");
                if let Some(Err(_)) = switch.reload_file(path).await {
                    // Not again on every poll: only a new file is worth another try.
                    watch.refused = Some(digest);
                }
            }
        }
    }
}

/// Size, modification time and identity of the file a path leads to, through symlinks:
/// an atomic rename and a ConfigMap's `..data` symlink swap both change the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    device: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let metadata = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let (device, inode) = {
            use std::os::unix::fs::MetadataExt;
            (metadata.dev(), metadata.ino())
        };
        #[cfg(not(unix))]
        let (device, inode) = (0, 0);
        Some(Stamp {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            device,
            inode,
        })
    }
}

/// What a poll of the watched file found.
#[derive(Debug)]
enum Poll {
    /// Nothing changed since the last poll.
    Quiet,
    /// Changed since the last poll: it may still be being written, so wait an interval.
    Settling,
    /// Stable again, with the content already loaded (or already refused).
    Same,
    /// Stable again, with content to load.
    Changed {
        digest: String,
    },
    Missing,
    Unreadable(std::io::Error),
}

/// Change detection for one path, polled every interval.
struct FileWatch {
    path: PathBuf,
    stamp: Option<Stamp>,
    /// A change was seen by the last poll; it counts once the file looks the same at
    /// the next one.
    settling: bool,
    /// The digest of content that was refused.
    refused: Option<String>,
}

impl FileWatch {
    /// Starts settled-pending, so the first poll compares the content with what is
    /// loaded: the file may have changed between loading it and watching it.
    fn new(path: PathBuf) -> FileWatch {
        let stamp = Stamp::of(&path);
        FileWatch {
            path,
            stamp,
            settling: true,
            refused: None,
        }
    }

    /// `loaded` is the digest of the newest policy loaded.
    fn poll(&mut self, loaded: &str) -> Poll {
        let stamp = Stamp::of(&self.path);
        if stamp != self.stamp {
            self.stamp = stamp;
            self.settling = true;
            return Poll::Settling;
        }
        if !std::mem::take(&mut self.settling) {
            return Poll::Quiet;
        }
        if stamp.is_none() {
            return Poll::Missing;
        }
        let wasm = match std::fs::read(&self.path) {
            Ok(wasm) => wasm,
            Err(error) => return Poll::Unreadable(error),
        };
        let digest = digest_of(&wasm);
        if digest == loaded || self.refused.as_ref() == Some(&digest) {
            Poll::Same
        } else {
            Poll::Changed { digest }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace_atomically(path: &Path, bytes: &[u8]) {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, bytes).unwrap();
        std::fs::rename(&temporary, path).unwrap();
    }

    #[test]
    fn an_atomic_rename_over_the_file_is_loaded_once_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.wasm");
        std::fs::write(&path, b"version one").unwrap();
        let loaded = digest_of(b"version one");
        let mut watch = FileWatch::new(path.clone());
        assert!(matches!(watch.poll(&loaded), Poll::Same));
        assert!(matches!(watch.poll(&loaded), Poll::Quiet));

        // Same length, and possibly the same mtime: only the inode tells.
        replace_atomically(&path, b"version two");
        assert!(matches!(watch.poll(&loaded), Poll::Settling));
        match watch.poll(&loaded) {
            Poll::Changed { digest } => assert_eq!(digest, digest_of(b"version two")),
            other => panic!("expected the new content, got {other:?}"),
        }
        assert!(matches!(watch.poll(&loaded), Poll::Quiet));
    }

    #[test]
    fn a_rewrite_with_identical_bytes_does_not_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.wasm");
        std::fs::write(&path, b"the same").unwrap();
        let loaded = digest_of(b"the same");
        let mut watch = FileWatch::new(path.clone());
        assert!(matches!(watch.poll(&loaded), Poll::Same));

        replace_atomically(&path, b"the same");
        assert!(matches!(watch.poll(&loaded), Poll::Settling));
        assert!(matches!(watch.poll(&loaded), Poll::Same));
        // In place too: whether the coarse mtime moved or not, nothing is offered.
        std::fs::write(&path, b"the same").unwrap();
        for _ in 0..3 {
            let poll = watch.poll(&loaded);
            assert!(
                matches!(poll, Poll::Quiet | Poll::Settling | Poll::Same),
                "{poll:?}"
            );
        }
    }

    #[test]
    fn a_half_written_file_is_not_loaded_before_it_is_stable() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.wasm");
        std::fs::write(&path, b"old").unwrap();
        let loaded = digest_of(b"old");
        let mut watch = FileWatch::new(path.clone());
        assert!(matches!(watch.poll(&loaded), Poll::Same));

        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(b"first half, ").unwrap();
        assert!(matches!(watch.poll(&loaded), Poll::Settling));
        file.write_all(b"second half").unwrap();
        assert!(
            matches!(watch.poll(&loaded), Poll::Settling),
            "still growing: not loaded"
        );
        drop(file);
        match watch.poll(&loaded) {
            Poll::Changed { digest } => {
                assert_eq!(digest, digest_of(b"first half, second half"))
            }
            other => panic!("expected the whole file, got {other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_configmap_style_symlink_swap_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // What the kubelet does: files in a versioned directory, `..data` pointing at
        // it, the file a symlink through `..data`; an update swaps `..data` atomically.
        for (version, content) in [("v1", "one"), ("v2", "two")] {
            std::fs::create_dir(root.join(version)).unwrap();
            std::fs::write(root.join(version).join("policy.wasm"), content).unwrap();
        }
        std::os::unix::fs::symlink("v1", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/policy.wasm", root.join("policy.wasm")).unwrap();
        let path = root.join("policy.wasm");
        let loaded = digest_of(b"one");
        let mut watch = FileWatch::new(path);
        assert!(matches!(watch.poll(&loaded), Poll::Same));

        std::os::unix::fs::symlink("v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        assert!(matches!(watch.poll(&loaded), Poll::Settling));
        match watch.poll(&loaded) {
            Poll::Changed { digest } => assert_eq!(digest, digest_of(b"two")),
            other => panic!("expected v2, got {other:?}"),
        }
    }

    #[test]
    fn refused_content_is_not_retried_until_the_file_changes_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.wasm");
        std::fs::write(&path, b"good").unwrap();
        let loaded = digest_of(b"good");
        let mut watch = FileWatch::new(path.clone());
        assert!(matches!(watch.poll(&loaded), Poll::Same));

        replace_atomically(&path, b"broken");
        assert!(matches!(watch.poll(&loaded), Poll::Settling));
        let Poll::Changed { digest } = watch.poll(&loaded) else {
            panic!("the broken file is offered once");
        };
        watch.refused = Some(digest);
        replace_atomically(&path, b"broken");
        assert!(matches!(watch.poll(&loaded), Poll::Settling));
        assert!(matches!(watch.poll(&loaded), Poll::Same));
        replace_atomically(&path, b"fixed");
        assert!(matches!(watch.poll(&loaded), Poll::Settling));
        assert!(matches!(watch.poll(&loaded), Poll::Changed { .. }));
    }

    #[test]
    fn a_missing_file_keeps_the_running_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.wasm");
        std::fs::write(&path, b"good").unwrap();
        let loaded = digest_of(b"good");
        let mut watch = FileWatch::new(path.clone());
        assert!(matches!(watch.poll(&loaded), Poll::Same));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(watch.poll(&loaded), Poll::Settling));
        assert!(matches!(watch.poll(&loaded), Poll::Missing));
        assert!(matches!(watch.poll(&loaded), Poll::Quiet));
    }
}
