//! An in-memory stand-in for the kafka-transit host, so that a policy's own logic is
//! tested with plain `cargo test` on the build machine: no Vault, no Kafka, no wasm.
//!
//! In native builds the SDK's [`transit`](crate::transit), [`envelope`](crate::envelope)
//! and [`log`](crate::log) are functions with the imports' exact signatures and types
//! that answer from the [`Host`] installed on the calling thread. Each test runs on its
//! own thread, so tests never see each other's keys, failures or calls; a policy made
//! with [`configured_policy!`](crate::configured_policy) keeps its configuration per
//! thread too.
//!
//! ```
//! use kafka_transit_policy_sdk::testing::{Host, Operation};
//! use kafka_transit_policy_sdk::transit::{self, EncryptItem, TransitError};
//!
//! let host = Host::install();
//! host.create_key("customers");
//! let item = EncryptItem { plaintext: b"secret".to_vec(), context: None };
//! let ciphertext = transit::encrypt("customers", &[item]).unwrap().remove(0).unwrap();
//! assert!(ciphertext.starts_with("vault:v1:"));
//!
//! host.fail_calls(TransitError::Unavailable("sealed".into())); // Vault is down
//! assert!(transit::hmac("customers", &[b"x".to_vec()]).is_err());
//! assert_eq!(host.calls().len(), 2);
//! assert_eq!(host.calls()[1].operation, Operation::Hmac);
//! ```
//!
//! The stand-in keeps the host's promises, not Vault's cryptography: ciphertexts look
//! like Vault's (`vault:v<N>:<base64>`) and decrypt only under the key, context and
//! associated data they were made with (else Vault's "cipher: message authentication
//! failed"; `rewrap`, which takes no associated data, refuses a bound ciphertext as
//! Vault does), but they are looked up in memory, not encrypted; HMACs are stable per
//! key, key version and input, and differ between inputs, but are not cryptographic.
//! Keys made with [`Host::create_derived_key`] need a context and, when convergent, give
//! the same text for the same input. Envelopes have the published header
//! (docs/envelope-format.md): version 2 from `seal`, version 3 from `seal_v3` (its flags,
//! compression and padding bits set as the host sets them, a stand-in key commitment
//! that `open` checks); the body is a stand-in, neither compressed nor padded, and
//! `open` checks the authenticated header and `aad` as AES-GCM would. The wrapped data
//! key is a stand-in ciphertext that `transit::rewrap` moves to a new version; all
//! envelopes sealed under one key version share one data key, as the host's do between
//! rotations. [`Host::rotate_key`] and [`Host::set_min_decryption_version`] act as
//! Vault's do; [`Host::set_sink_topic`] answers `pipeline::sink_topic`. Assert what the
//! policy does with the answers, not the answers' bytes.

use std::cell::RefCell;
use std::rc::Rc;

use crate::kafka_transit::policy::envelope::{OpenItem, SealItem, SealOptions};
use crate::kafka_transit::policy::transit::{
    BoundDecryptItem, BoundEncryptItem, DecryptItem, EncryptItem, TransitError,
};
use crate::{Level, SourceRecord};

/// A host call a policy made: see [`Host::calls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub operation: Operation,
    /// The transit key the call named.
    pub key: String,
    /// How many items the call carried.
    pub items: usize,
}

/// The host's Vault operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    Encrypt,
    Decrypt,
    Rewrap,
    Hmac,
    Seal,
    Open,
    /// `transit::encrypt_bound`: Vault's encrypt with `associated_data`.
    EncryptBound,
    /// `transit::decrypt_bound`: Vault's decrypt with `associated_data`.
    DecryptBound,
    /// `envelope::seal_v3`: envelope format version 3.
    SealV3,
}

/// A source record with this key and value, as a test's input (topic `test`,
/// partition 0, offset 0, no timestamp, no headers). Change any field afterwards; a
/// tombstone is `SourceRecord { value: None, ..record("k", "") }`.
pub fn record(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> SourceRecord {
    SourceRecord {
        topic: "test".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: Some(key.as_ref().to_vec()),
        value: Some(value.as_ref().to_vec()),
        headers: Vec::new(),
    }
}

type Answer<T> = Result<Vec<Result<T, TransitError>>, TransitError>;
type Handler<I, T> = Box<dyn FnMut(&str, &[I]) -> Answer<T>>;
type SealHandler =
    Box<dyn FnMut(&str, Option<&[u8]>, &[SealItem]) -> Result<Vec<Vec<u8>>, TransitError>>;
type SealV3Handler = Box<
    dyn FnMut(&str, Option<&[u8]>, SealOptions, &[SealItem]) -> Result<Vec<Vec<u8>>, TransitError>,
>;
type OpenHandler = Box<dyn FnMut(&str, Option<&[u8]>, &[OpenItem]) -> Answer<Vec<u8>>>;
type ItemMatcher = Box<dyn Fn(&[u8]) -> bool>;

/// The stand-in host of one thread. Cloning gives another handle to the same host.
#[derive(Clone)]
pub struct Host {
    state: Rc<RefCell<State>>,
}

thread_local! {
    static INSTALLED: RefCell<Option<Host>> = const { RefCell::new(None) };
}

impl Host {
    /// A host with no keys and no failures, answering this thread's imports from now on
    /// (in place of any earlier one). Keep the handle to control it.
    pub fn install() -> Host {
        let host = Host {
            state: Rc::new(RefCell::new(State::default())),
        };
        INSTALLED.with(|installed| *installed.borrow_mut() = Some(host.clone()));
        host
    }

    /// Creates transit key `name` at version 1. Calls naming a key that was never
    /// created fail as a whole with `key-not-found`, as they do against Vault.
    pub fn create_key(&self, name: &str) {
        self.state.borrow_mut().keys.entry(name.into()).or_insert(1);
    }

    /// Creates transit key `name` at version 1 as Vault's `derived = true` (every call
    /// needs a non-empty context; Vault's "missing 'context'" error otherwise) and, with
    /// `convergent`, `convergent_encryption = true`: the same plaintext, context and key
    /// version always give the same ciphertext text, as Vault's do.
    pub fn create_derived_key(&self, name: &str, convergent: bool) {
        let mut state = self.state.borrow_mut();
        state.keys.entry(name.into()).or_insert(1);
        state.kinds.insert(
            name.into(),
            engine::KeyKind {
                derived: true,
                convergent,
            },
        );
    }

    /// What `pipeline::sink_topic(source)` answers from now on: the sink topic of
    /// records from `source`. Until a test sets one, it answers the host's error outside
    /// a pipeline (`kafka-transit validate`); once one is set, a source topic without one
    /// is an error too (a `sink.topic` template that gives no topic for it).
    pub fn set_sink_topic(&self, source: &str, sink: &str) {
        self.state
            .borrow_mut()
            .sink_topics
            .insert(source.into(), sink.into());
    }

    /// Registers `text` as the schema of `id`: what `schema_registry::schema_by_id(id)`
    /// answers from now on (ids never registered answer `not-found`).
    pub fn register_schema(
        &self,
        id: u32,
        schema_type: crate::schema_registry::SchemaType,
        text: &str,
    ) {
        self.state.borrow_mut().schemas.insert(
            id,
            crate::schema_registry::Schema {
                schema_type,
                text: text.into(),
                references: Vec::new(),
            },
        );
    }

    /// Every `schema_by_id` fails with `error` until [`Host::registry_recovers`].
    pub fn registry_fails(&self, error: crate::schema_registry::RegistryError) {
        self.state.borrow_mut().registry_failure = Some(error);
    }

    pub fn registry_recovers(&self) {
        self.state.borrow_mut().registry_failure = None;
    }

    /// How many times the policy asked the registry for a schema.
    pub fn schema_lookups(&self) -> usize {
        self.state.borrow().schema_lookups
    }

    /// A new version of key `name` (created if missing): later encryptions, seals and
    /// HMACs use it, older ciphertexts still decrypt, and rewrap moves them to it.
    pub fn rotate_key(&self, name: &str) {
        *self.state.borrow_mut().keys.entry(name.into()).or_insert(0) += 1;
    }

    /// From now on `encrypt` creates a key it does not have, as Vault does for a token
    /// with `create` on `transit/encrypt/<name>`.
    pub fn allow_key_creation(&self) {
        self.state.borrow_mut().upsert = true;
    }

    /// What `kafka-transit forget` does to a subject's key: Vault deletes it (every
    /// ciphertext and envelope under it stops opening: `key-not-found`), and the host
    /// refuses to seal under its name again.
    pub fn forget_key(&self, name: &str) {
        let mut state = self.state.borrow_mut();
        state.keys.remove(name);
        state.data_keys.retain(|(key, _), _| key != name);
        state.forgotten.insert(name.into());
    }

    /// Whether transit key `name` exists.
    pub fn has_key(&self, name: &str) -> bool {
        self.state.borrow().keys.contains_key(name)
    }

    /// Like Vault's `min_decryption_version` of key `name`: ciphertexts (and envelopes'
    /// wrapped data keys) of older versions no longer decrypt, rewrap or open.
    pub fn set_min_decryption_version(&self, name: &str, version: u32) {
        self.state
            .borrow_mut()
            .min_decryption
            .insert(name.into(), version);
    }

    /// Every later call fails as a whole with `error` (Vault sealed or unreachable:
    /// `unavailable`; a token without the right: `permission-denied`; ...), until
    /// [`Host::clear_failures`]. This comes before any `on_*` handler.
    pub fn fail_calls(&self, error: TransitError) {
        self.state.borrow_mut().failing_calls = Some(error);
    }

    /// Items whose input satisfies `matching` fail with `error`, the other items of the
    /// same call succeed. The input is the plaintext (encrypt, seal), the ciphertext
    /// text (decrypt, rewrap), the HMAC input, or the envelope (open). `seal` has no
    /// per-item results, so there a matching item fails its whole call. Applies to the
    /// in-memory answers only: an `on_*` handler decides for itself.
    pub fn fail_items(&self, matching: impl Fn(&[u8]) -> bool + 'static, error: TransitError) {
        self.state
            .borrow_mut()
            .failing_items
            .push((Box::new(matching), error));
    }

    /// Calls naming transit key `name` fail as a whole with `permission-denied`, as from
    /// a token whose ACL leaves the key out (the host's message names the key and the
    /// Vault path, and so does this one), until [`Host::clear_failures`]. A key that was
    /// never created is the other per-key failure: `key-not-found`. This comes after
    /// [`Host::fail_calls`] and before any `on_*` handler.
    pub fn deny_key(&self, name: &str) {
        self.state.borrow_mut().denied_keys.insert(name.into());
    }

    /// Forgets the failures set with [`Host::fail_calls`], [`Host::fail_items`] and
    /// [`Host::deny_key`].
    pub fn clear_failures(&self) {
        let mut state = self.state.borrow_mut();
        state.failing_calls = None;
        state.failing_items.clear();
        state.denied_keys.clear();
    }

    /// Answers `transit::encrypt` with `handler` instead of the in-memory engine.
    pub fn on_encrypt(
        &self,
        handler: impl FnMut(&str, &[EncryptItem]) -> Answer<String> + 'static,
    ) {
        self.state.borrow_mut().handlers.encrypt = Some(Box::new(handler));
    }

    /// Answers `transit::decrypt` with `handler` instead of the in-memory engine.
    pub fn on_decrypt(
        &self,
        handler: impl FnMut(&str, &[DecryptItem]) -> Answer<Vec<u8>> + 'static,
    ) {
        self.state.borrow_mut().handlers.decrypt = Some(Box::new(handler));
    }

    /// Answers `transit::rewrap` with `handler` instead of the in-memory engine.
    pub fn on_rewrap(&self, handler: impl FnMut(&str, &[DecryptItem]) -> Answer<String> + 'static) {
        self.state.borrow_mut().handlers.rewrap = Some(Box::new(handler));
    }

    /// Answers `transit::hmac` with `handler` instead of the in-memory engine.
    pub fn on_hmac(&self, handler: impl FnMut(&str, &[Vec<u8>]) -> Answer<String> + 'static) {
        self.state.borrow_mut().handlers.hmac = Some(Box::new(handler));
    }

    /// Answers `envelope::seal` with `handler` instead of the in-memory engine.
    pub fn on_seal(
        &self,
        handler: impl FnMut(&str, Option<&[u8]>, &[SealItem]) -> Result<Vec<Vec<u8>>, TransitError>
            + 'static,
    ) {
        self.state.borrow_mut().handlers.seal = Some(Box::new(handler));
    }

    /// Answers `transit::encrypt_bound` with `handler` instead of the in-memory engine.
    pub fn on_encrypt_bound(
        &self,
        handler: impl FnMut(&str, &[BoundEncryptItem]) -> Answer<String> + 'static,
    ) {
        self.state.borrow_mut().handlers.encrypt_bound = Some(Box::new(handler));
    }

    /// Answers `transit::decrypt_bound` with `handler` instead of the in-memory engine.
    pub fn on_decrypt_bound(
        &self,
        handler: impl FnMut(&str, &[BoundDecryptItem]) -> Answer<Vec<u8>> + 'static,
    ) {
        self.state.borrow_mut().handlers.decrypt_bound = Some(Box::new(handler));
    }

    /// Answers `envelope::seal_v3` with `handler` instead of the in-memory engine.
    pub fn on_seal_v3(
        &self,
        handler: impl FnMut(
                &str,
                Option<&[u8]>,
                SealOptions,
                &[SealItem],
            ) -> Result<Vec<Vec<u8>>, TransitError>
            + 'static,
    ) {
        self.state.borrow_mut().handlers.seal_v3 = Some(Box::new(handler));
    }

    /// Answers `envelope::open` with `handler` instead of the in-memory engine.
    pub fn on_open(
        &self,
        handler: impl FnMut(&str, Option<&[u8]>, &[OpenItem]) -> Answer<Vec<u8>> + 'static,
    ) {
        self.state.borrow_mut().handlers.open = Some(Box::new(handler));
    }

    /// `plaintext` encrypted under `key` (through `transit::encrypt`, so it counts as a
    /// call): a test's input for a policy that takes ciphertexts.
    pub fn encrypt(&self, key: &str, plaintext: &[u8]) -> String {
        let item = EncryptItem {
            plaintext: plaintext.to_vec(),
            context: None,
        };
        imports::transit::encrypt(key, &[item])
            .and_then(|mut results| results.remove(0))
            .unwrap_or_else(|error| panic!("encrypting a test input under {key:?}: {error:?}"))
    }

    /// `ciphertext` decrypted under `key` (through `transit::decrypt`): what any consumer
    /// of a policy's output would get.
    pub fn decrypt(&self, key: &str, ciphertext: &str) -> Result<Vec<u8>, TransitError> {
        let item = DecryptItem {
            ciphertext: ciphertext.into(),
            context: None,
        };
        imports::transit::decrypt(key, &[item])?.remove(0)
    }

    /// Every Vault call the policy made since [`Host::install`], in order: the host
    /// sends one Vault batch request per call, so this is what a batch costs.
    pub fn calls(&self) -> Vec<Call> {
        self.state.borrow().calls.clone()
    }

    /// How many items each `operation` call carried, in order: `[2]` is one Vault batch
    /// request of two items.
    pub fn items_per_call(&self, operation: Operation) -> Vec<usize> {
        let calls = self.calls();
        calls
            .iter()
            .filter(|call| call.operation == operation)
            .map(|call| call.items)
            .collect()
    }

    /// Every message the policy logged since [`Host::install`], in order.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.state.borrow().logs.clone()
    }
}

/// What a handler slot in [`Handlers`] holds, for [`answer`].
type Slot<H> = fn(&mut Handlers) -> &mut Option<H>;

/// One import call: recorded, then failed as a whole if the test said so, then answered
/// by the test's handler if it set one, else by the in-memory engine.
fn answer<H, R>(
    import: &str,
    call: Call,
    slot: Slot<H>,
    handle: impl FnOnce(&mut H) -> Result<R, TransitError>,
    in_memory: impl FnOnce(&mut State) -> Result<R, TransitError>,
) -> Result<R, TransitError> {
    let host = INSTALLED
        .with(|installed| installed.borrow().clone())
        .unwrap_or_else(|| {
            panic!(
                "{import} was called natively with no stand-in host on this thread: start the \
                 test with `let host = kafka_transit_policy_sdk::testing::Host::install();`"
            )
        });
    let handler = {
        let mut state = host.state.borrow_mut();
        state.calls.push(call);
        if let Some(error) = &state.failing_calls {
            return Err(error.clone());
        }
        let call = state.calls.last().expect("just recorded");
        if state.denied_keys.contains(&call.key) {
            return Err(denied(call));
        }
        slot(&mut state.handlers).take()
    };
    match handler {
        // Run without holding the state, so the handler may use the Host itself.
        Some(mut handler) => {
            let result = handle(&mut handler);
            slot(&mut host.state.borrow_mut().handlers).get_or_insert(handler);
            result
        }
        None => in_memory(&mut host.state.borrow_mut()),
    }
}

/// The host's words for a 403 on a call naming a denied key (host/src/vault/error.rs).
fn denied(call: &Call) -> TransitError {
    let operation = match call.operation {
        Operation::Encrypt | Operation::EncryptBound => "encrypt",
        Operation::Decrypt | Operation::DecryptBound | Operation::Open => "decrypt",
        Operation::Rewrap => "rewrap",
        Operation::Hmac => "hmac",
        Operation::Seal | Operation::SealV3 => "datakey/plaintext",
    };
    TransitError::PermissionDenied(format!(
        "permission denied by Vault for `transit/{operation}/{key}` (transit mount `transit` \
         (key `{key}`)): grant the token's policy access to this path, or check that the \
         token has not expired",
        key = call.key
    ))
}

fn call(operation: Operation, key: &str, items: usize) -> Call {
    Call {
        operation,
        key: key.into(),
        items,
    }
}

#[derive(Default)]
struct Handlers {
    encrypt: Option<Handler<EncryptItem, String>>,
    decrypt: Option<Handler<DecryptItem, Vec<u8>>>,
    rewrap: Option<Handler<DecryptItem, String>>,
    hmac: Option<Handler<Vec<u8>, String>>,
    seal: Option<SealHandler>,
    open: Option<OpenHandler>,
    encrypt_bound: Option<Handler<BoundEncryptItem, String>>,
    decrypt_bound: Option<Handler<BoundDecryptItem, Vec<u8>>>,
    seal_v3: Option<SealV3Handler>,
}

mod engine;
pub(crate) mod imports;

use engine::State;
#[cfg(test)]
mod tests;
