//! The delivery mode, chosen once from `pipeline.delivery`: how a transformed batch is
//! handed to the sink, how its acknowledgements are awaited, and when the source
//! position moves past it. Both modes hand records over through the same
//! [`Sink`](super::sink::Sink); each owns what it needs of its own (a producer and the
//! batches in flight; the partitions' transactions).

mod at_least_once;
mod exactly_once;

use std::sync::Arc;

use crate::config::{DeliveryGuarantee, PipelineConfig};
use crate::metrics::Metrics;
use crate::policy::{PolicyRuntime, TransformResult};
use crate::vault::VaultClient;

use super::error::PipelineError;
use super::ownership::{Handover, Ownership};
use super::sink::Sink;
use super::source::{Batch, Source};

use at_least_once::{AtLeastOnce, Untracked};
use exactly_once::ExactlyOnce;

pub(crate) enum Delivery {
    AtLeastOnce(AtLeastOnce),
    ExactlyOnce(ExactlyOnce),
}

impl Delivery {
    /// Needs a tokio runtime (exactly once commits on blocking threads).
    pub(crate) fn new(
        config: &PipelineConfig,
        sink: Sink,
        ownership: Arc<Ownership>,
        metrics: Arc<Metrics>,
        vault: VaultClient,
    ) -> Result<Delivery, PipelineError> {
        Ok(match config.pipeline.delivery {
            DeliveryGuarantee::AtLeastOnce => {
                Delivery::AtLeastOnce(AtLeastOnce::new(config, sink, ownership, metrics)?)
            }
            DeliveryGuarantee::ExactlyOnce => {
                Delivery::ExactlyOnce(ExactlyOnce::new(config, sink, ownership, metrics, vault))
            }
        })
    }

    /// What the source's rebalances must tell this mode.
    pub(crate) fn handover(&self) -> Arc<dyn Handover> {
        match self {
            Delivery::AtLeastOnce(_) => Arc::new(Untracked),
            Delivery::ExactlyOnce(mode) => mode.handover(),
        }
    }

    /// An error found outside the pipeline's own calls (a rebalance that could not take
    /// its partitions), which stops the pipeline before it reads further.
    pub(crate) fn take_failure(&self) -> Option<PipelineError> {
        match self {
            Delivery::AtLeastOnce(_) => None,
            Delivery::ExactlyOnce(mode) => mode.take_failure(),
        }
    }

    /// Hands a transformed batch (one result per record) to the sink.
    pub(crate) async fn deliver(
        &mut self,
        batch: Batch,
        results: Vec<TransformResult>,
        policy: &Arc<PolicyRuntime>,
        source: &mut Source,
    ) -> Result<(), PipelineError> {
        match self {
            Delivery::AtLeastOnce(mode) => mode.deliver(batch, results, policy, source).await,
            Delivery::ExactlyOnce(mode) => mode.deliver(batch, results, policy, source).await,
        }
    }

    /// Finishes and commits everything handed over so far: the source is quiet, Vault is
    /// away, or the pipeline stops.
    pub(crate) async fn flush(&mut self, source: &mut Source) -> Result<(), PipelineError> {
        match self {
            Delivery::AtLeastOnce(mode) => mode.flush(source).await,
            Delivery::ExactlyOnce(mode) => mode.flush(source).await,
        }
    }

    /// Before the pipeline returns: finishes and commits what was handed over. After an
    /// error, at least once still completes the acknowledged batches (a restart repeats
    /// less); exactly once leaves its open transactions to abort (the next owner of
    /// their partitions fences this runner).
    pub(crate) async fn finish(
        &mut self,
        source: &mut Source,
        after_error: bool,
    ) -> Result<(), PipelineError> {
        match self {
            Delivery::AtLeastOnce(mode) => mode.flush(source).await,
            Delivery::ExactlyOnce(_) if after_error => Ok(()),
            Delivery::ExactlyOnce(mode) => mode.flush(source).await,
        }
    }

    /// Gives up what is still unacknowledged (a stop past `pipeline.shutdown_timeout`);
    /// none of it is committed. Returns how many batches that was.
    pub(crate) fn abandon(&mut self) -> usize {
        match self {
            Delivery::AtLeastOnce(mode) => mode.abandon(),
            Delivery::ExactlyOnce(_) => 0,
        }
    }
}
