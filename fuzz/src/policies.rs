//! The built-in policies (guest/*/src/lib.rs) compiled natively, as their own tests
//! compile them: their Vault calls go to the SDK's stand-in host
//! (`kafka_transit_policy_sdk::testing::Host`), installed per thread.

#[path = "../../guest/decrypt-fields/src/lib.rs"]
pub mod decrypt_fields;
#[path = "../../guest/decrypt-value/src/lib.rs"]
pub mod decrypt_value;
#[path = "../../guest/encrypt-fields/src/lib.rs"]
pub mod encrypt_fields;
#[path = "../../guest/encrypt-value/src/lib.rs"]
pub mod encrypt_value;
#[path = "../../guest/envelope-open/src/lib.rs"]
pub mod envelope_open;
#[path = "../../guest/envelope-rewrap/src/lib.rs"]
pub mod envelope_rewrap;
#[path = "../../guest/envelope-seal/src/lib.rs"]
pub mod envelope_seal;
#[path = "../../guest/rewrap-fields/src/lib.rs"]
pub mod rewrap_fields;
#[path = "../../guest/rewrap-value/src/lib.rs"]
pub mod rewrap_value;

pub use decrypt_fields::DecryptFields;
pub use decrypt_value::DecryptValue;
pub use encrypt_fields::EncryptFields;
pub use encrypt_value::EncryptValue;
pub use envelope_open::EnvelopeOpen;
pub use envelope_rewrap::EnvelopeRewrap;
pub use envelope_seal::EnvelopeSeal;
pub use rewrap_fields::RewrapFields;
pub use rewrap_value::RewrapValue;
