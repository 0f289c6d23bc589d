//! Forgetting a data subject (docs/forgetting.md): records sealed per data subject
//! (`envelope-seal` with `subject`) are under a transit key of that subject's own;
//! `kafka-transit forget` deletes it, and from then on no runner or reader can open
//! them.
//!
//! - [`ForgottenKeys`]: the subjects' keys a runner knows to be forgotten. It refuses to
//!   seal under them (a forgotten subject's key is never made again), answers opening
//!   with "key not found" at once, and drops their data keys from its caches.
//! - [`watch`]: how runners learn of a forget: the compacted topic `[forget] topic` on
//!   the source cluster, read from its beginning before the pipeline starts and
//!   followed while it runs.
//! - [`forget`]: the procedure behind `kafka-transit forget` and `POST /admin/forget`:
//!   the subject's key name from Vault's HMAC of its id, a marker on the topic, a grace
//!   period for runners to see it, then the key deleted in Vault.

mod forgotten;
mod procedure;
mod settings;
mod watcher;

pub use forgotten::ForgottenKeys;
pub use procedure::{forget, ForgetError, Report, SubjectNaming};
pub use settings::ForgetSettings;
pub use watcher::{watch, Watcher};
