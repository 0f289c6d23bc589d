//! What the fuzz targets in `fuzz_targets/` share: the built-in policies compiled
//! natively, the records the host would hand them, and an independent JSON model for the
//! field-level oracles.

pub mod json_model;
pub mod policies;
pub mod records;
