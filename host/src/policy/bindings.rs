//! The one place the host's WIT bindings are generated (from `../wit`). Everything
//! else in the host uses these types through `crate::policy`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "data-policy",
    imports: { default: async },
    exports: { default: async },
    additional_derives: [PartialEq, Eq],
});

pub use self::kafka_transit::policy::log::Level;
pub use self::kafka_transit::policy::transit::{DecryptItem, EncryptItem, TransitError};
pub use self::kafka_transit::policy::types::{Failure, Header, OutputRecord, SourceRecord};

/// One result per input record.
pub type TransformResult = Result<Vec<OutputRecord>, Failure>;
