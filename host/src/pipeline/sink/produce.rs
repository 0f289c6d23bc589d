//! Handing a record to a librdkafka producer: what the sink side and the dead letters
//! share.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::pipeline::stopping::Stopping;

/// Hands a record to librdkafka, waiting while its local queue is full, unless the
/// pipeline is stopping: then the full queue is the answer (nothing of the batch is
/// committed, so its records are consumed again after a restart).
pub(crate) async fn enqueue(
    producer: &FutureProducer,
    mut message: FutureRecord<'_, [u8], [u8]>,
    stopping: &Stopping,
) -> Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(message) {
            Ok(delivery) => return Ok(delivery),
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
