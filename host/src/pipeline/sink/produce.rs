//! Handing a record to a librdkafka producer: what the sink side and the dead letters
//! share.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::BaseRecord;

use crate::kafka::{AckingProducer, Acks, Ticket};
use crate::pipeline::stopping::Stopping;

/// A record ready for a producer, carrying its ticket.
pub(crate) type Message<'a> = BaseRecord<'a, [u8], [u8], Box<Ticket>>;

/// Where a hand-over's records go: a producer, and the acknowledgements their tickets
/// count in (one [`Acks`] per batch, or per transaction).
#[derive(Clone, Copy)]
pub(crate) struct Outbox<'a> {
    pub producer: &'a AckingProducer,
    pub acks: &'a Acks,
}

impl<'a> Outbox<'a> {
    /// A message to `topic` with the next ticket; returns the ticket's number too.
    pub(crate) fn message(&self, topic: &'a str) -> (Message<'a>, usize) {
        let ticket = self.acks.ticket();
        let number = ticket.number();
        (BaseRecord::with_opaque_to(topic, ticket), number)
    }
}

/// Hands a record to librdkafka, waiting while its local queue is full, unless the
/// pipeline is stopping: then the full queue is the answer (nothing of the batch is
/// committed, so its records are consumed again after a restart).
pub(crate) async fn enqueue(
    producer: &AckingProducer,
    mut message: Message<'_>,
    stopping: &Stopping,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(message) {
            Ok(()) => return Ok(()),
            Err((error @ KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                if stopping.requested() {
                    return Err(error);
                }
                message = returned;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, _)) => return Err(error),
        }
    }
}
