//! The example policy that `kafka-transit policy new` writes, compiled and tested here
//! against this SDK, so that a change to the SDK which would break a new author's first
//! crate fails this crate's tests instead (the template's own tests run here).

#[path = "../../../host/templates/policy/src/lib.rs"]
mod template;
