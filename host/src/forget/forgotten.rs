//! The set of forgotten subjects' keys a runner holds.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// Transit key names of forgotten data subjects. Shared by every policy instance and
/// every policy a runner swaps in; the data key caches compare [`ForgottenKeys::generation`]
/// at each call and drop what was forgotten since.
#[derive(Debug, Default)]
pub struct ForgottenKeys {
    names: RwLock<HashSet<String>>,
    generation: AtomicU64,
}

impl ForgottenKeys {
    /// Records a forgotten key; `true` if it was not known before.
    pub fn insert(&self, name: &str) -> bool {
        let added = self
            .names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        if added {
            self.generation.fetch_add(1, Ordering::Release);
        }
        added
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    /// How many keys are known forgotten.
    pub fn len(&self) -> usize {
        self.names.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes whenever a key is added: caches purge when it moved.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generation_moves_once_per_new_key() {
        let keys = ForgottenKeys::default();
        assert_eq!(keys.generation(), 0);
        assert!(keys.insert("customers-a"));
        assert!(!keys.insert("customers-a"));
        assert_eq!(keys.generation(), 1);
        assert!(keys.contains("customers-a") && !keys.contains("customers-b"));
        assert_eq!(keys.len(), 1);
    }
}
