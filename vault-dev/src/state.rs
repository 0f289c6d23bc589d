//! The server's durable state: the mount table and each transit mount's keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keys::KeyPolicy;

/// One mounted secrets engine (only `transit` exists here).
#[derive(Serialize, Deserialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub mount_type: String,
    pub accessor: String,
    pub uuid: String,
    pub keys: BTreeMap<String, KeyPolicy>,
}

impl Mount {
    pub fn transit() -> Self {
        let uuid = uuid::Uuid::new_v4().to_string();
        Self {
            mount_type: "transit".into(),
            accessor: format!("transit_{}", &uuid[..8]),
            uuid,
            keys: BTreeMap::new(),
        }
    }
}

/// Mount path (without slashes at either end) -> mount.
#[derive(Serialize, Deserialize, Default)]
pub struct State {
    pub mounts: BTreeMap<String, Mount>,
}

impl State {
    /// Longest-prefix match of a request path against the mount table; returns the
    /// mount path and the rest of the request path after it.
    pub fn find_mount<'p>(&self, path: &'p str) -> Option<(String, &'p str)> {
        self.mounts
            .keys()
            .filter_map(|m| {
                if path == m {
                    Some((m, ""))
                } else {
                    path.strip_prefix(m.as_str())
                        .and_then(|rest| rest.strip_prefix('/'))
                        .map(|rest| (m, rest))
                }
            })
            .max_by_key(|(m, _)| m.len())
            .map(|(m, rest)| (m.clone(), rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mut s = State::default();
        s.mounts.insert("team".into(), Mount::transit());
        s.mounts.insert("team/transit".into(), Mount::transit());
        assert_eq!(
            s.find_mount("team/transit/encrypt/k"),
            Some(("team/transit".into(), "encrypt/k"))
        );
        assert_eq!(
            s.find_mount("team/encrypt/k"),
            Some(("team".into(), "encrypt/k"))
        );
        assert_eq!(s.find_mount("teamx/encrypt/k"), None);
    }
}
