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
//! like Vault's (`vault:v<N>:<base64>`) and decrypt only under the key and context they
//! were made with, but they are looked up in memory, not encrypted; HMACs are stable per
//! key, key version and input, and differ between inputs, but are not cryptographic.
//! Envelopes have the published header (docs/envelope-format.md), whose wrapped data key
//! is a stand-in ciphertext that `transit::rewrap` moves to a new version; all envelopes
//! sealed under one key version share one data key, as the host's do between rotations.
//! [`Host::rotate_key`] and [`Host::set_min_decryption_version`] act as Vault's do.
//! Assert what the policy does with the answers, not the answers' bytes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::envelope_format;
use crate::kafka_transit::policy::envelope::{OpenItem, SealItem};
use crate::kafka_transit::policy::transit::{DecryptItem, EncryptItem, TransitError};
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
pub enum Operation {
    Encrypt,
    Decrypt,
    Rewrap,
    Hmac,
    Seal,
    Open,
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

    /// A new version of key `name` (created if missing): later encryptions, seals and
    /// HMACs use it, older ciphertexts still decrypt, and rewrap moves them to it.
    pub fn rotate_key(&self, name: &str) {
        *self.state.borrow_mut().keys.entry(name.into()).or_insert(0) += 1;
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
        Operation::Encrypt => "encrypt",
        Operation::Decrypt | Operation::Open => "decrypt",
        Operation::Rewrap => "rewrap",
        Operation::Hmac => "hmac",
        Operation::Seal => "datakey/plaintext",
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
}

/// What a ciphertext or envelope stands for.
#[derive(Clone)]
struct Secret {
    key: String,
    context: Option<Vec<u8>>,
    aad: Vec<u8>,
    plaintext: Vec<u8>,
}

/// A transit key and a derivation context: what one data key serves.
type SealingSlot = (String, Option<Vec<u8>>);

#[derive(Default)]
struct State {
    /// Transit key name -> latest version.
    keys: HashMap<String, u32>,
    /// Transit key name -> `min_decryption_version`, where a test set one.
    min_decryption: HashMap<String, u32>,
    ciphertexts: HashMap<String, Secret>,
    /// The data key in use per transit key and context: the version that wrapped it,
    /// and its wrapped text.
    data_keys: HashMap<SealingSlot, (u32, String)>,
    /// (data key, envelope body) -> what was sealed.
    envelopes: HashMap<(Vec<u8>, Vec<u8>), Secret>,
    issued: u64,
    failing_calls: Option<TransitError>,
    denied_keys: std::collections::HashSet<String>,
    failing_items: Vec<(ItemMatcher, TransitError)>,
    handlers: Handlers,
    calls: Vec<Call>,
    logs: Vec<(Level, String)>,
}

/// Vault's own text when a ciphertext does not open under the key and context given.
const AUTHENTICATION_FAILED: &str = "cipher: message authentication failed";
/// Vault's own text for a ciphertext older than the key's `min_decryption_version`.
const TOO_OLD: &str = "ciphertext or signature version is disallowed by policy (too old)";

impl State {
    fn version(&self, key: &str) -> Result<u32, TransitError> {
        self.keys.get(key).copied().ok_or_else(|| {
            TransitError::KeyNotFound(format!(
                "transit key {key:?} not found (the test never called Host::create_key({key:?}))"
            ))
        })
    }

    fn item_failure(&self, input: &[u8]) -> Option<TransitError> {
        self.failing_items
            .iter()
            .find(|(matching, _)| matching(input))
            .map(|(_, error)| error.clone())
    }

    /// A name for the next secret: `stand-in:<n>`, never anything of the plaintext.
    fn next_name(&mut self) -> String {
        self.issued += 1;
        format!("stand-in:{}", self.issued)
    }

    fn issue_ciphertext(&mut self, version: u32, secret: Secret) -> String {
        let name = self.next_name();
        let ciphertext = format!("vault:v{version}:{}", base64(name.as_bytes()));
        self.ciphertexts.insert(ciphertext.clone(), secret);
        ciphertext
    }

    fn find_ciphertext(&self, key: &str, item: &DecryptItem) -> Result<Secret, TransitError> {
        let version = item
            .ciphertext
            .strip_prefix("vault:v")
            .and_then(|rest| rest.split(':').next())
            .and_then(|version| version.parse::<u32>().ok());
        let minimum = self.min_decryption.get(key).copied().unwrap_or(1);
        if version.is_some_and(|version| version < minimum) {
            return Err(TransitError::InvalidInput(TOO_OLD.into()));
        }
        match self.ciphertexts.get(&item.ciphertext) {
            None => Err(TransitError::InvalidInput(
                "invalid ciphertext: not one that transit::encrypt or rewrap returned".into(),
            )),
            Some(secret) if secret.key != key || secret.context != item.context => {
                Err(TransitError::InvalidInput(AUTHENTICATION_FAILED.into()))
            }
            Some(secret) => Ok(secret.clone()),
        }
    }

    fn encrypt(&mut self, key: &str, items: &[EncryptItem]) -> Answer<String> {
        let version = self.version(key)?;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            results.push(match self.item_failure(&item.plaintext) {
                Some(error) => Err(error),
                None => Ok(self.issue_ciphertext(
                    version,
                    Secret {
                        key: key.into(),
                        context: item.context.clone(),
                        aad: Vec::new(),
                        plaintext: item.plaintext.clone(),
                    },
                )),
            });
        }
        Ok(results)
    }

    fn decrypt(&mut self, key: &str, items: &[DecryptItem]) -> Answer<Vec<u8>> {
        self.version(key)?;
        Ok(items
            .iter()
            .map(|item| match self.item_failure(item.ciphertext.as_bytes()) {
                Some(error) => Err(error),
                None => self
                    .find_ciphertext(key, item)
                    .map(|secret| secret.plaintext),
            })
            .collect())
    }

    fn rewrap(&mut self, key: &str, items: &[DecryptItem]) -> Answer<String> {
        let version = self.version(key)?;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            results.push(match self.item_failure(item.ciphertext.as_bytes()) {
                Some(error) => Err(error),
                None => self
                    .find_ciphertext(key, item)
                    .map(|secret| self.issue_ciphertext(version, secret)),
            });
        }
        Ok(results)
    }

    fn hmac(&mut self, key: &str, inputs: &[Vec<u8>]) -> Answer<String> {
        let version = self.version(key)?;
        Ok(inputs
            .iter()
            .map(|input| match self.item_failure(input) {
                Some(error) => Err(error),
                None => Ok(format!(
                    "vault:v{version}:{}",
                    base64(&digest(key, version, input))
                )),
            })
            .collect())
    }

    fn seal(
        &mut self,
        key: &str,
        context: Option<&[u8]>,
        items: &[SealItem],
    ) -> Result<Vec<Vec<u8>>, TransitError> {
        // As the host does: no data key for a name readers would refuse in an envelope.
        envelope_format::check_key_name(key.as_bytes()).map_err(|reason| {
            TransitError::InvalidInput(format!(
                "an envelope's key name must be a transit key name: {reason}"
            ))
        })?;
        let version = self.version(key)?;
        if let Some(error) = items
            .iter()
            .find_map(|item| self.item_failure(&item.plaintext))
        {
            return Err(error);
        }
        let context = context.map(<[u8]>::to_vec);
        let slot = (key.to_string(), context.clone());
        let wrapped = match self.data_keys.get(&slot) {
            Some((minted, wrapped)) if *minted == version => wrapped.clone(),
            // A rotation (or a first seal): a fresh data key, wrapped by the new version.
            _ => {
                let data_key = Secret {
                    key: key.into(),
                    context: context.clone(),
                    aad: Vec::new(),
                    plaintext: self.next_name().into_bytes(),
                };
                let wrapped = self.issue_ciphertext(version, data_key);
                self.data_keys.insert(slot, (version, wrapped.clone()));
                wrapped
            }
        };
        let data_key = self.ciphertexts[&wrapped].plaintext.clone();
        items
            .iter()
            .map(|item| {
                // Nonce, ciphertext and tag stand in as a name, 28 bytes like the smallest.
                let body = format!("{:<28}", self.next_name()).into_bytes();
                let secret = Secret {
                    key: key.into(),
                    context: context.clone(),
                    aad: item.aad.clone(),
                    plaintext: item.plaintext.clone(),
                };
                self.envelopes
                    .insert((data_key.clone(), body.clone()), secret);
                envelope_format::assemble(key, &wrapped, &body)
                    .map_err(|error| TransitError::Other(error.to_string()))
            })
            .collect()
    }

    /// What an envelope holds, as the host opens it: its wrapped data key unwrapped
    /// under `key` and `context` (so `min_decryption_version` applies), then the body.
    fn open_one(
        &self,
        key: &str,
        context: Option<&[u8]>,
        item: &OpenItem,
    ) -> Result<Vec<u8>, TransitError> {
        let header = envelope_format::parse(&item.envelope)
            .map_err(|error| TransitError::InvalidInput(error.to_string()))?;
        if header.key_name != key {
            // As the host says it: the envelope's key name is the record's, not quoted.
            return Err(TransitError::InvalidInput(format!(
                "envelope was sealed with another Vault key than the one this policy opens, {key:?}"
            )));
        }
        let unwrap = DecryptItem {
            ciphertext: header.wrapped_key.into(),
            context: context.map(<[u8]>::to_vec),
        };
        let data_key = self.find_ciphertext(key, &unwrap).map_err(|error| {
            let TransitError::InvalidInput(message) = error else {
                return error;
            };
            TransitError::InvalidInput(format!(
                "the envelope's data key could not be unwrapped: {message}"
            ))
        })?;
        match self
            .envelopes
            .get(&(data_key.plaintext, header.body.to_vec()))
        {
            None => Err(TransitError::InvalidInput(
                "not an envelope that envelope::seal returned (malformed, truncated or \
                 tampered with)"
                    .into(),
            )),
            Some(secret) if secret.aad != item.aad => {
                Err(TransitError::InvalidInput(AUTHENTICATION_FAILED.into()))
            }
            Some(secret) => Ok(secret.plaintext.clone()),
        }
    }

    fn open(&mut self, key: &str, context: Option<&[u8]>, items: &[OpenItem]) -> Answer<Vec<u8>> {
        self.version(key)?;
        Ok(items
            .iter()
            .map(|item| match self.item_failure(&item.envelope) {
                Some(error) => Err(error),
                None => self.open_one(key, context, item),
            })
            .collect())
    }
}

/// 32 bytes that depend on every byte of the key name, the version and the input
/// (FNV-1a in four lanes): stable and distinct, as HMACs are, but not a MAC.
fn digest(key: &str, version: u32, input: &[u8]) -> Vec<u8> {
    let version = version.to_be_bytes();
    (0u8..4)
        .flat_map(|lane| {
            let bytes = [&[lane][..], key.as_bytes(), &[0], &version, input];
            let hash = bytes
                .concat()
                .iter()
                .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                    (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
                });
            hash.to_be_bytes()
        })
        .collect()
}

/// Standard base64 with padding, as Vault writes it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let bits = chunk.iter().enumerate().fold(0u32, |bits, (i, byte)| {
            bits | u32::from(*byte) << (16 - 8 * i)
        });
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(ALPHABET[(bits >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// The imports as a policy sees them in a native build: the same paths, functions and
/// types as in a component (the SDK re-exports these as `transit`, `envelope`, `log`).
pub(crate) mod imports {
    use super::{answer, call, Answer, Operation};
    use crate::Level;

    /// Vault's transit engine through the host (see `interface transit` in the WIT);
    /// natively, answered by the installed [`Host`](crate::testing::Host).
    pub mod transit {
        use super::*;
        pub use crate::kafka_transit::policy::transit::{DecryptItem, EncryptItem, TransitError};

        pub fn encrypt(key: &str, items: &[EncryptItem]) -> Answer<String> {
            answer(
                "transit::encrypt",
                call(Operation::Encrypt, key, items.len()),
                |handlers| &mut handlers.encrypt,
                |handler| handler(key, items),
                |state| state.encrypt(key, items),
            )
        }

        pub fn decrypt(key: &str, items: &[DecryptItem]) -> Answer<Vec<u8>> {
            answer(
                "transit::decrypt",
                call(Operation::Decrypt, key, items.len()),
                |handlers| &mut handlers.decrypt,
                |handler| handler(key, items),
                |state| state.decrypt(key, items),
            )
        }

        pub fn rewrap(key: &str, items: &[DecryptItem]) -> Answer<String> {
            answer(
                "transit::rewrap",
                call(Operation::Rewrap, key, items.len()),
                |handlers| &mut handlers.rewrap,
                |handler| handler(key, items),
                |state| state.rewrap(key, items),
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
    }

    /// Envelope encryption by the host (see `interface envelope` in the WIT);
    /// natively, answered by the installed [`Host`](crate::testing::Host).
    pub mod envelope {
        use super::*;
        pub use crate::kafka_transit::policy::envelope::{OpenItem, SealItem};
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
                |state| state.seal(key, context, items),
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
        let _ = [generated::envelope::seal, envelope::seal];
        let _ = [generated::envelope::open, envelope::open];
        let _ = [generated::log::log, log];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{envelope, transit, Failure, OutputRecord, Prepared};

    fn encrypt_item(plaintext: &str, context: Option<&str>) -> EncryptItem {
        EncryptItem {
            plaintext: plaintext.as_bytes().to_vec(),
            context: context.map(|c| c.as_bytes().to_vec()),
        }
    }

    fn decrypt_item(ciphertext: &str, context: Option<&str>) -> DecryptItem {
        DecryptItem {
            ciphertext: ciphertext.into(),
            context: context.map(|c| c.as_bytes().to_vec()),
        }
    }

    #[test]
    fn ciphertexts_decrypt_only_under_their_key_and_context() {
        let host = Host::install();
        host.create_key("a");
        host.create_key("b");
        let items = [
            encrypt_item("secret", None),
            encrypt_item("secret", Some("t1")),
        ];
        let ciphertexts: Vec<String> = transit::encrypt("a", &items)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_ne!(
            ciphertexts[0], ciphertexts[1],
            "a fresh ciphertext each time"
        );
        for ciphertext in &ciphertexts {
            assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");
            assert!(!ciphertext.contains("secret"));
        }

        let results = transit::decrypt(
            "a",
            &[
                decrypt_item(&ciphertexts[0], None),
                decrypt_item(&ciphertexts[1], Some("t1")),
                decrypt_item(&ciphertexts[1], Some("t2")),
                decrypt_item("vault:v1:bm90IG9uZSBvZiBvdXJz", None),
            ],
        )
        .unwrap();
        assert_eq!(results[0], Ok(b"secret".to_vec()));
        assert_eq!(results[1], Ok(b"secret".to_vec()));
        assert!(
            matches!(&results[2], Err(TransitError::InvalidInput(m)) if m == AUTHENTICATION_FAILED)
        );
        assert!(matches!(&results[3], Err(TransitError::InvalidInput(_))));

        let under_b = transit::decrypt("b", &[decrypt_item(&ciphertexts[0], None)]).unwrap();
        assert!(matches!(&under_b[0], Err(TransitError::InvalidInput(_))));
        assert!(matches!(
            transit::encrypt("missing", &items),
            Err(TransitError::KeyNotFound(m)) if m.contains("missing")
        ));
    }

    #[test]
    fn rotation_rewraps_to_the_latest_version_and_hmacs_follow_it() {
        let host = Host::install();
        host.create_key("k");
        let old = transit::encrypt("k", &[encrypt_item("x", None)]).unwrap()[0]
            .clone()
            .unwrap();
        let hmac_v1 = transit::hmac("k", &[b"x".to_vec(), b"x".to_vec(), b"y".to_vec()]).unwrap();
        assert_eq!(hmac_v1[0], hmac_v1[1], "stable per input");
        assert_ne!(hmac_v1[0], hmac_v1[2], "distinct between inputs");
        host.rotate_key("k");
        let rewrapped = transit::rewrap("k", &[decrypt_item(&old, None)]).unwrap()[0]
            .clone()
            .unwrap();
        assert!(rewrapped.starts_with("vault:v2:"), "{rewrapped}");
        for ciphertext in [&old, &rewrapped] {
            let plaintext = transit::decrypt("k", &[decrypt_item(ciphertext, None)]).unwrap();
            assert_eq!(plaintext[0], Ok(b"x".to_vec()));
        }
        let hmac_v2 = transit::hmac("k", &[b"x".to_vec()]).unwrap();
        assert!(hmac_v2[0].as_ref().unwrap().starts_with("vault:v2:"));
        assert_ne!(hmac_v2[0], hmac_v1[0]);
    }

    #[test]
    fn min_decryption_version_refuses_older_ciphertexts_and_envelopes() {
        let host = Host::install();
        host.create_key("k");
        let old = transit::encrypt("k", &[encrypt_item("x", None)]).unwrap()[0]
            .clone()
            .unwrap();
        let seal = SealItem {
            plaintext: b"big".to_vec(),
            aad: Vec::new(),
        };
        let sealed_v1 = envelope::seal("k", None, &[seal.clone(), seal.clone()]).unwrap();
        let header = |sealed: &[u8]| {
            crate::envelope_format::parse(sealed)
                .unwrap()
                .wrapped_key
                .to_string()
        };
        assert_eq!(header(&sealed_v1[0]), header(&sealed_v1[1]), "one data key");
        host.rotate_key("k");
        let sealed_v2 = envelope::seal("k", None, &[seal]).unwrap().remove(0);
        assert!(
            header(&sealed_v2).starts_with("vault:v2:"),
            "a rotation mints a new data key"
        );
        let rewrapped_key = transit::rewrap("k", &[decrypt_item(&header(&sealed_v1[0]), None)])
            .unwrap()
            .remove(0)
            .unwrap();
        let rewrapped = crate::envelope_format::parse(&sealed_v1[0])
            .unwrap()
            .rewrapped(&rewrapped_key)
            .unwrap();

        host.set_min_decryption_version("k", 2);
        let refused = transit::decrypt("k", &[decrypt_item(&old, None)]).unwrap();
        assert!(matches!(&refused[0], Err(TransitError::InvalidInput(m)) if m == TOO_OLD));
        let open = |envelope: &Vec<u8>| OpenItem {
            envelope: envelope.clone(),
            aad: Vec::new(),
        };
        let opened = envelope::open(
            "k",
            None,
            &[open(&sealed_v1[1]), open(&sealed_v2), open(&rewrapped)],
        )
        .unwrap();
        assert!(matches!(&opened[0], Err(TransitError::InvalidInput(m)) if m.contains(TOO_OLD)));
        assert_eq!(opened[1], Ok(b"big".to_vec()));
        assert_eq!(opened[2], Ok(b"big".to_vec()));
    }

    #[test]
    fn envelopes_open_only_with_their_key_context_and_aad() {
        let host = Host::install();
        host.create_key("k");
        host.create_key("other");
        let seal = |plaintext: &str, aad: &str| SealItem {
            plaintext: plaintext.as_bytes().to_vec(),
            aad: aad.as_bytes().to_vec(),
        };
        let sealed =
            envelope::seal("k", Some(b"ctx"), &[seal("big", ""), seal("big", "h")]).unwrap();
        assert_eq!(sealed[0][0], 2, "version byte");
        assert!(!sealed[0].windows(3).any(|w| w == b"big"));
        let open = |envelope: &[u8], aad: &str| OpenItem {
            envelope: envelope.to_vec(),
            aad: aad.as_bytes().to_vec(),
        };
        let opened = envelope::open(
            "k",
            Some(b"ctx"),
            &[
                open(&sealed[0], ""),
                open(&sealed[1], "h"),
                open(&sealed[1], ""),
                open(b"junk", ""),
            ],
        )
        .unwrap();
        assert_eq!(opened[0], Ok(b"big".to_vec()));
        assert_eq!(opened[1], Ok(b"big".to_vec()));
        assert!(matches!(&opened[2], Err(TransitError::InvalidInput(_))));
        assert!(matches!(&opened[3], Err(TransitError::InvalidInput(_))));
        let elsewhere = envelope::open("other", Some(b"ctx"), &[open(&sealed[0], "")]).unwrap();
        // Like the host: the configured key is named, the envelope's (the record's) is not.
        assert!(matches!(&elsewhere[0], Err(TransitError::InvalidInput(m))
            if m.contains("another Vault key") && m.contains("\"other\"") && !m.contains("\"k\"")));
        assert_eq!(
            host.calls().iter().map(|c| c.operation).collect::<Vec<_>>(),
            [Operation::Seal, Operation::Open, Operation::Open]
        );
    }

    #[test]
    fn failures_and_handlers_are_the_tests_to_set() {
        let host = Host::install();
        host.create_key("k");
        host.fail_items(
            |input| input == b"poison",
            TransitError::InvalidInput("refused".into()),
        );
        let results = transit::hmac("k", &[b"ok".to_vec(), b"poison".to_vec()]).unwrap();
        assert!(results[0].is_ok());
        assert_eq!(
            results[1],
            Err(TransitError::InvalidInput("refused".into()))
        );
        let poisoned = SealItem {
            plaintext: b"poison".to_vec(),
            aad: Vec::new(),
        };
        assert!(envelope::seal("k", None, &[poisoned]).is_err());

        host.fail_calls(TransitError::PermissionDenied("no".into()));
        assert_eq!(
            transit::hmac("k", &[b"ok".to_vec()]),
            Err(TransitError::PermissionDenied("no".into()))
        );
        host.clear_failures();
        assert!(transit::hmac("k", &[b"poison".to_vec()]).unwrap()[0].is_ok());

        // A handler replaces the engine, and may look at the host while it answers.
        let inside = host.clone();
        host.on_hmac(move |key, inputs| {
            Ok(inputs
                .iter()
                .map(|_| Ok(format!("{key}:{}", inside.calls().len())))
                .collect())
        });
        let answers = transit::hmac("k", &[b"a".to_vec()]).unwrap();
        assert_eq!(answers[0], Ok("k:5".into()));
        assert_eq!(host.calls().len(), 5);
        assert!(host.calls().iter().all(|c| c.key == "k"));
    }

    #[test]
    fn a_denied_key_fails_every_call_naming_it_and_only_those() {
        let host = Host::install();
        host.create_key("open");
        host.create_key("closed");
        host.deny_key("closed");
        assert!(transit::hmac("open", &[b"x".to_vec()]).is_ok());
        let item = [encrypt_item("x", None)];
        assert!(matches!(
            transit::encrypt("closed", &item),
            Err(TransitError::PermissionDenied(m)) if m.contains("transit/encrypt/closed")
        ));
        let seal = SealItem {
            plaintext: b"x".to_vec(),
            aad: Vec::new(),
        };
        assert!(matches!(
            envelope::seal("closed", None, std::slice::from_ref(&seal)),
            Err(TransitError::PermissionDenied(_))
        ));
        // Denial comes before existence, as an ACL check comes before the key lookup.
        host.deny_key("never-created");
        assert!(matches!(
            transit::encrypt("never-created", &item),
            Err(TransitError::PermissionDenied(_))
        ));
        host.clear_failures();
        assert!(envelope::seal("closed", None, &[seal]).is_ok());
    }

    #[test]
    fn a_policy_helper_maps_the_stand_ins_failures_like_the_hosts() {
        let host = Host::install();
        host.create_key("k");
        host.fail_items(
            |input| input == b"bad",
            TransitError::InvalidInput("bad".into()),
        );
        let hash = |batch| {
            crate::through_vault(
                batch,
                "vault hmac",
                |record: &mut SourceRecord| Prepared::Item(record.value.take().unwrap()),
                |inputs| transit::hmac("k", inputs),
                |record, hmac| OutputRecord {
                    value: Some(hmac.into_bytes()),
                    ..crate::forward(record)
                },
            )
        };
        let results = hash(vec![record("1", "good"), record("2", "bad")]);
        assert!(results[0].is_ok());
        assert!(matches!(&results[1], Err(Failure::InvalidInput(_))));
        host.fail_calls(TransitError::Unavailable("sealed".into()));
        let results = hash(vec![record("1", "good")]);
        assert!(matches!(&results[0], Err(Failure::Retryable(_))));
    }

    #[test]
    fn logs_are_kept_and_base64_is_standard() {
        let host = Host::install();
        crate::log(Level::Warn, "careful");
        assert_eq!(host.logs(), [(Level::Warn, "careful".to_string())]);
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"stand-in:1"), "c3RhbmQtaW46MQ==");
    }

    #[test]
    #[should_panic(expected = "Host::install()")]
    fn an_import_without_a_host_says_how_to_install_one() {
        let _ = transit::hmac("k", &[]);
    }
}
