//! Policies compiled from `guest/` by the build script and embedded in the binary.

macro_rules! builtin {
    ($name:literal, $file:literal) => {
        ($name, include_bytes!(concat!(env!("OUT_DIR"), "/", $file)))
    };
}

const BUILTINS: &[(&str, &[u8])] = &[
    builtin!("passthrough", "passthrough.wasm"),
    builtin!("encrypt-value", "encrypt_value.wasm"),
    builtin!("decrypt-value", "decrypt_value.wasm"),
    builtin!("encrypt-fields", "encrypt_fields.wasm"),
    builtin!("decrypt-fields", "decrypt_fields.wasm"),
    builtin!("encrypt-schema-fields", "encrypt_schema_fields.wasm"),
    builtin!("decrypt-schema-fields", "decrypt_schema_fields.wasm"),
    builtin!("envelope-seal", "envelope_seal.wasm"),
    builtin!("envelope-open", "envelope_open.wasm"),
    builtin!("rewrap-value", "rewrap_value.wasm"),
    builtin!("rewrap-fields", "rewrap_fields.wasm"),
    builtin!("rewrap-schema-fields", "rewrap_schema_fields.wasm"),
    builtin!("envelope-rewrap", "envelope_rewrap.wasm"),
];

/// The component of a built-in policy.
pub fn component(name: &str) -> Option<&'static [u8]> {
    BUILTINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, wasm)| *wasm)
}

/// Names of every built-in policy, for help texts and errors.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(name, _)| *name)
}
