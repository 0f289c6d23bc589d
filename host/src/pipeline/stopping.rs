//! The stop request, as the places that may wait on the sink see it: a full producer
//! queue (the sink is down or slow) would otherwise hold a stop for as long as the sink
//! stays away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once the pipeline was asked to stop. Cheap to clone; every clone sees the flag.
#[derive(Clone, Default)]
pub(crate) struct Stopping(Arc<AtomicBool>);

impl Stopping {
    pub(crate) fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub(crate) fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
