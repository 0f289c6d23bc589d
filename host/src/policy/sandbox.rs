//! What one policy instance may take of the host: memory across all of its linear
//! memories together, and bounded counts of tables, table elements, memories and core
//! instances. wasmtime's `StoreLimits` bounds each linear memory on its own, so a
//! component made of several core modules could take a multiple of the limit.

use wasmtime::ResourceLimiter;

/// Most table elements one table may hold (function references; a Rust policy needs a
/// few hundred).
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Most tables, linear memories and core instances one component instance may create:
/// a component built with wit-bindgen has a handful of each.
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;
const MAX_INSTANCES: usize = 64;

/// A [`ResourceLimiter`] for one store (one policy instance).
#[derive(Debug)]
pub struct InstanceLimits {
    memory_limit: usize,
    /// Bytes of all linear memories of the instance, as last grown.
    memory_in_use: usize,
}

impl InstanceLimits {
    pub fn new(memory_limit: usize) -> Self {
        InstanceLimits {
            memory_limit,
            memory_in_use: 0,
        }
    }
}

impl ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.memory_in_use - current.min(self.memory_in_use)).saturating_add(desired);
        if total > self.memory_limit {
            // A trap, not a failed `memory.grow`: the record that needed the memory
            // fails (policy.memory_limit_mib), the others go on in a fresh instance.
            return Err(wasmtime::Error::msg(format!(
                "the policy instance would use {total} bytes of linear memory, more than \
                 policy.memory_limit_mib allows ({} bytes)",
                self.memory_limit
            )));
        }
        self.memory_in_use = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::Error::msg(format!(
                "the policy would grow a table to {desired} elements (at most {MAX_TABLE_ELEMENTS})"
            )));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn memory_is_limited_across_all_memories_of_an_instance() {
        let mut limits = InstanceLimits::new(64 * MIB);
        // Two memories of 40 MiB: each alone is within the limit, together they are not.
        assert!(limits.memory_growing(0, 40 * MIB, None).unwrap());
        let error = limits.memory_growing(0, 40 * MIB, None).unwrap_err();
        assert!(
            error.to_string().contains("policy.memory_limit_mib"),
            "{error}"
        );
        // The first one may still grow up to the limit, and no further.
        assert!(limits.memory_growing(40 * MIB, 64 * MIB, None).unwrap());
        assert!(limits
            .memory_growing(64 * MIB, 64 * MIB + 65536, None)
            .is_err());
    }

    #[test]
    fn tables_and_counts_are_bounded() {
        let mut limits = InstanceLimits::new(64 * MIB);
        assert!(limits.table_growing(0, 1000, None).unwrap());
        assert!(limits
            .table_growing(1000, MAX_TABLE_ELEMENTS + 1, None)
            .is_err());
        assert_eq!(limits.memories(), MAX_MEMORIES);
        assert_eq!(limits.tables(), MAX_TABLES);
        assert_eq!(limits.instances(), MAX_INSTANCES);
    }
}
