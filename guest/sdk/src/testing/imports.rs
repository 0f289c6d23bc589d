//! The imports as a policy sees them in a native build: the same paths, functions and
//! types as in a component (the SDK re-exports these as `transit`, `envelope`,
//! `pipeline`, `log`).

use super::engine::{Plain, Sealed};
use super::{answer, call, Answer, Operation};
use crate::Level;

/// Vault's transit engine through the host (see `interface transit` in the WIT);
/// natively, answered by the installed [`Host`](crate::testing::Host).
pub mod transit {
    use super::*;
    pub use crate::kafka_transit::policy::transit::{
        BoundDecryptItem, BoundEncryptItem, DecryptItem, EncryptItem, TransitError,
    };

    pub fn encrypt(key: &str, items: &[EncryptItem]) -> Answer<String> {
        answer(
            "transit::encrypt",
            call(Operation::Encrypt, key, items.len()),
            |handlers| &mut handlers.encrypt,
            |handler| handler(key, items),
            |state| {
                let items: Vec<Plain<'_>> = items
                    .iter()
                    .map(|item| Plain {
                        plaintext: &item.plaintext,
                        context: item.context.as_deref(),
                        aad: &[],
                    })
                    .collect();
                state.encrypt(key, &items)
            },
        )
    }

    pub fn decrypt(key: &str, items: &[DecryptItem]) -> Answer<Vec<u8>> {
        answer(
            "transit::decrypt",
            call(Operation::Decrypt, key, items.len()),
            |handlers| &mut handlers.decrypt,
            |handler| handler(key, items),
            |state| state.decrypt(key, &unbound(items)),
        )
    }

    pub fn rewrap(key: &str, items: &[DecryptItem]) -> Answer<String> {
        answer(
            "transit::rewrap",
            call(Operation::Rewrap, key, items.len()),
            |handlers| &mut handlers.rewrap,
            |handler| handler(key, items),
            |state| state.rewrap(key, &unbound(items)),
        )
    }

    pub fn hmac(key: &str, inputs: &[Vec<u8>]) -> Answer<String> {
        answer(
            "transit::hmac",
            call(Operation::Hmac, key, inputs.len()),
            |handlers| &mut handlers.hmac,
            |handler| handler(key, inputs),
            |state| state.hmac(key, inputs),
        )
    }

    /// `encrypt` with Vault's `associated_data` per item: the ciphertext opens only
    /// with `decrypt_bound` and the same bytes.
    pub fn encrypt_bound(key: &str, items: &[BoundEncryptItem]) -> Answer<String> {
        answer(
            "transit::encrypt_bound",
            call(Operation::EncryptBound, key, items.len()),
            |handlers| &mut handlers.encrypt_bound,
            |handler| handler(key, items),
            |state| {
                let items: Vec<Plain<'_>> = items
                    .iter()
                    .map(|item| Plain {
                        plaintext: &item.plaintext,
                        context: item.context.as_deref(),
                        aad: &item.associated_data,
                    })
                    .collect();
                state.encrypt(key, &items)
            },
        )
    }

    /// `decrypt` with associated data per item: other bytes than the ciphertext was
    /// made with fail the item with Vault's "cipher: message authentication failed".
    pub fn decrypt_bound(key: &str, items: &[BoundDecryptItem]) -> Answer<Vec<u8>> {
        answer(
            "transit::decrypt_bound",
            call(Operation::DecryptBound, key, items.len()),
            |handlers| &mut handlers.decrypt_bound,
            |handler| handler(key, items),
            |state| {
                let items: Vec<Sealed<'_>> = items
                    .iter()
                    .map(|item| Sealed {
                        ciphertext: &item.ciphertext,
                        context: item.context.as_deref(),
                        aad: &item.associated_data,
                    })
                    .collect();
                state.decrypt(key, &items)
            },
        )
    }

    fn unbound(items: &[DecryptItem]) -> Vec<Sealed<'_>> {
        items
            .iter()
            .map(|item| Sealed {
                ciphertext: &item.ciphertext,
                context: item.context.as_deref(),
                aad: &[],
            })
            .collect()
    }
}

/// Envelope encryption by the host (see `interface envelope` in the WIT);
/// natively, answered by the installed [`Host`](crate::testing::Host).
pub mod envelope {
    use super::*;
    pub use crate::kafka_transit::policy::envelope::{
        Compression, OpenItem, SealItem, SealOptions,
    };
    pub use crate::kafka_transit::policy::transit::TransitError;

    pub fn seal(
        key: &str,
        context: Option<&[u8]>,
        items: &[SealItem],
    ) -> Result<Vec<Vec<u8>>, TransitError> {
        answer(
            "envelope::seal",
            call(Operation::Seal, key, items.len()),
            |handlers| &mut handlers.seal,
            |handler| handler(key, context, items),
            |state| state.seal(key, context, items, None),
        )
    }

    /// Seals in format version 3: a real version 3 header (flags with the compression
    /// and padding bits set from `options`, a stand-in key commitment) that `open`
    /// checks; the body is a stand-in, neither compressed nor padded.
    pub fn seal_v3(
        key: &str,
        context: Option<&[u8]>,
        options: SealOptions,
        items: &[SealItem],
    ) -> Result<Vec<Vec<u8>>, TransitError> {
        answer(
            "envelope::seal_v3",
            call(Operation::SealV3, key, items.len()),
            |handlers| &mut handlers.seal_v3,
            |handler| handler(key, context, options, items),
            |state| state.seal_v3(key, context, options, items),
        )
    }

    pub fn open(key: &str, context: Option<&[u8]>, items: &[OpenItem]) -> Answer<Vec<u8>> {
        answer(
            "envelope::open",
            call(Operation::Open, key, items.len()),
            |handlers| &mut handlers.open,
            |handler| handler(key, context, items),
            |state| state.open(key, context, items),
        )
    }
}

/// What a policy may know of its pipeline (see `interface pipeline` in the WIT);
/// natively, answered by the installed [`Host`](crate::testing::Host): what a test set
/// with [`Host::set_sink_topic`](crate::testing::Host::set_sink_topic), else the host's
/// error outside a pipeline. Not a Vault call: not in [`Host::calls`](crate::testing::Host::calls).
pub mod pipeline {
    pub fn sink_topic(source_topic: &str) -> Result<String, String> {
        let host = super::super::INSTALLED
            .with(|installed| installed.borrow().clone())
            .unwrap_or_else(|| {
                panic!(
                    "pipeline::sink_topic was called natively with no stand-in host on this \
                     thread: start the test with \
                     `let host = kafka_transit_policy_sdk::testing::Host::install();`"
                )
            });
        let state = host.state.borrow();
        state.sink_topic(source_topic)
    }
}

/// The pipeline's Schema Registry (see `interface schema-registry` in the WIT);
/// natively, answered by the installed [`Host`](crate::testing::Host) from the schemas a
/// test registered with [`Host::register_schema`](crate::testing::Host::register_schema).
/// Not a Vault call: not in [`Host::calls`](crate::testing::Host::calls).
pub mod schema_registry {
    pub use crate::kafka_transit::policy::schema_registry::{
        Reference, RegistryError, Schema, SchemaType,
    };

    pub fn schema_by_id(id: u32) -> Result<Schema, RegistryError> {
        let host = super::super::INSTALLED
            .with(|installed| installed.borrow().clone())
            .unwrap_or_else(|| {
                panic!(
                    "schema_registry::schema_by_id was called natively with no stand-in host \
                     on this thread: start the test with \
                     `let host = kafka_transit_policy_sdk::testing::Host::install();`"
                )
            });
        let mut state = host.state.borrow_mut();
        state.schema_lookups += 1;
        if let Some(error) = &state.registry_failure {
            return Err(error.clone());
        }
        state
            .schemas
            .get(&id)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(format!("no schema with id {id}")))
    }
}

/// Logs through the host; natively, kept by the installed
/// [`Host`](crate::testing::Host) (see [`Host::logs`](crate::testing::Host::logs)), or
/// printed to stderr when there is none.
pub fn log(level: Level, message: &str) {
    let host = super::INSTALLED.with(|installed| installed.borrow().clone());
    match host {
        Some(host) => host.state.borrow_mut().logs.push((level, message.into())),
        None => eprintln!("[{level:?}] {message}"),
    }
}

// A policy that compiles natively must compile as a component, and the reverse: the
// stand-ins keep the generated imports' signatures, or this does not compile.
#[allow(dead_code)]
fn signatures_match_the_generated_imports() {
    use crate::kafka_transit::policy as generated;
    let _ = [generated::transit::encrypt, transit::encrypt];
    let _ = [generated::transit::decrypt, transit::decrypt];
    let _ = [generated::transit::rewrap, transit::rewrap];
    let _ = [generated::transit::hmac, transit::hmac];
    let _ = [generated::transit::encrypt_bound, transit::encrypt_bound];
    let _ = [generated::transit::decrypt_bound, transit::decrypt_bound];
    let _ = [generated::envelope::seal, envelope::seal];
    let _ = [generated::envelope::seal_v3, envelope::seal_v3];
    let _ = [generated::envelope::open, envelope::open];
    let _ = [generated::pipeline::sink_topic, pipeline::sink_topic];
    let _ = [generated::log::log, log];
}
