//! Delivery acknowledgements counted per batch.
//!
//! rdkafka's `FutureProducer` gives every record its own future: a boxed oneshot sender
//! for librdkafka's callback, the channel, and a task node when a batch awaits them
//! together. At tens of thousands of records a second that bookkeeping cost the runner
//! more CPU than its policy did (BENCHMARKS.md, "Profile"). The pipeline only needs to
//! know when a whole batch (or transaction) is answered and which of its records failed,
//! so a batch shares one [`Acks`]: each record carries a numbered [`Ticket`], the
//! delivery callback notes the failures, and the last answer wakes the one waiter.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

/// A sink or dead-letter producer whose deliveries are answered through [`Acks`].
pub type AckingProducer = ThreadedProducer<Acknowledging>;

/// The producer context that answers each delivery to its record's [`Ticket`].
pub struct Acknowledging;

impl ClientContext for Acknowledging {}

impl ProducerContext for Acknowledging {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        if let Err((error, message)) = result {
            ticket.failed(error.clone(), message.detach());
        }
        // Dropping the ticket counts its answer.
    }
}

/// A record the sink did not take.
#[derive(Debug)]
pub struct Failed {
    /// Its [`Ticket::number`].
    pub number: usize,
    pub error: KafkaError,
    /// The record as handed over (to produce it again, or to say which it was).
    pub message: OwnedMessage,
}

struct Shared {
    /// Tickets not answered yet, plus one until [`Acks::close`].
    pending: AtomicUsize,
    closed: AtomicBool,
    numbered: AtomicUsize,
    failures: Mutex<Vec<Failed>>,
    waker: AtomicWaker,
}

impl Shared {
    fn answered(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waker.wake();
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, Vec<Failed>> {
        // A failure is pushed whole or not at all: a poisoned list is still consistent.
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The acknowledgements of one batch's (or one transaction's) records.
#[derive(Clone)]
pub struct Acks(Arc<Shared>);

impl Default for Acks {
    fn default() -> Acks {
        Acks(Arc::new(Shared {
            pending: AtomicUsize::new(1),
            closed: AtomicBool::new(false),
            numbered: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            waker: AtomicWaker::new(),
        }))
    }
}

impl Acks {
    pub fn new() -> Acks {
        Acks::default()
    }

    /// The ticket for the next record handed over. A ticket that never reaches the
    /// producer (the send failed) counts as answered when it is dropped, with no failure:
    /// the caller has the send's error.
    pub fn ticket(&self) -> Box<Ticket> {
        self.0.pending.fetch_add(1, Ordering::AcqRel);
        Box::new(Ticket {
            shared: self.0.clone(),
            number: self.0.numbered.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// No more records will be handed over: once every ticket is answered,
    /// [`Acks::answered`] completes. Closing twice is closing once.
    pub fn close(&self) {
        if !self.0.closed.swap(true, Ordering::AcqRel) {
            self.0.answered();
        }
    }

    /// The error of the first record that failed so far, if one did.
    pub fn first_failure(&self) -> Option<KafkaError> {
        self.0.failures().first().map(|failed| failed.error.clone())
    }

    /// Waits until the acks are closed and every ticket is answered, and returns the
    /// records that failed, in the order their answers came.
    pub fn answered(&self) -> Answered {
        Answered(self.0.clone())
    }

    /// Closes the acks and waits for every answer: the first failure's error, if any
    /// (for a record handed over on its own).
    pub async fn outcome(&self) -> Result<(), KafkaError> {
        self.close();
        match self.answered().await.into_iter().next() {
            None => Ok(()),
            Some(failed) => Err(failed.error),
        }
    }

    /// Every ticket answered, once closed; the same as awaiting [`Acks::answered`].
    pub fn wait(&self) -> Vec<Failed> {
        futures::executor::block_on(self.answered())
    }
}

/// See [`Acks::answered`].
pub struct Answered(Arc<Shared>);

impl Future for Answered {
    type Output = Vec<Failed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<Failed>> {
        if self.0.pending.load(Ordering::Acquire) != 0 {
            self.0.waker.register(cx.waker());
            // Answered between the check and the registration: its wake was missed.
            if self.0.pending.load(Ordering::Acquire) != 0 {
                return Poll::Pending;
            }
        }
        Poll::Ready(std::mem::take(&mut *self.0.failures()))
    }
}

/// One record's claim on its batch's [`Acks`], carried through librdkafka as the
/// record's delivery opaque.
pub struct Ticket {
    shared: Arc<Shared>,
    number: usize,
}

impl Ticket {
    /// The record's number among its [`Acks`]' tickets, from 0 in the order they were
    /// made: how a [`Failed`] names it.
    pub fn number(&self) -> usize {
        self.number
    }

    fn failed(&self, error: KafkaError, message: OwnedMessage) {
        self.shared.failures().push(Failed {
            number: self.number,
            error,
            message,
        });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.answered();
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("number", &self.number)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;
    use rdkafka::error::RDKafkaErrorCode;
    use rdkafka::message::{Message, OwnedHeaders, Timestamp};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer};
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use rdkafka::ClientConfig;

    use super::*;

    fn message() -> OwnedMessage {
        OwnedMessage::new(
            Some(b"v".to_vec()),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            -1,
            Some(OwnedHeaders::new()),
        )
    }

    #[test]
    fn acks_complete_only_once_closed_and_every_ticket_is_answered() {
        let acks = Acks::new();
        let first = acks.ticket();
        let second = acks.ticket();
        assert_eq!((first.number(), second.number()), (0, 1));
        let mut answered = acks.answered();
        assert!((&mut answered).now_or_never().is_none(), "nothing answered");
        drop(first);
        second.failed(
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
            message(),
        );
        drop(second);
        assert_eq!(
            acks.first_failure(),
            Some(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge
            ))
        );
        assert!(
            (&mut answered).now_or_never().is_none(),
            "answered, but more records may still come"
        );
        acks.close();
        acks.close();
        let failed = answered.now_or_never().expect("closed and answered");
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].number, 1);
        assert_eq!(failed[0].message.payload(), Some(&b"v"[..]));
    }

    #[test]
    fn closed_acks_with_no_tickets_are_answered_at_once() {
        let acks = Acks::new();
        acks.close();
        assert!(acks.wait().is_empty());
    }

    fn producer(cluster: &MockCluster<'_, DefaultProducerContext>) -> AckingProducer {
        ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("message.max.bytes", "2000")
            .set("linger.ms", "0")
            .create_with_context(Acknowledging)
            .unwrap()
    }

    fn send(producer: &AckingProducer, acks: &Acks, value: &[u8]) -> Result<(), KafkaError> {
        let record =
            BaseRecord::<[u8], [u8], _>::with_opaque_to("out", acks.ticket()).payload(value);
        producer.send(record).map_err(|(error, _)| error)
    }

    async fn answered(acks: &Acks) -> Vec<(usize, KafkaError, Option<Vec<u8>>)> {
        acks.close();
        tokio::time::timeout(Duration::from_secs(10), acks.answered())
            .await
            .expect("every record answered")
            .into_iter()
            .map(|failed| {
                (
                    failed.number,
                    failed.error,
                    failed.message.payload().map(<[u8]>::to_vec),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_record_the_broker_refuses_is_the_only_failure_named_by_its_number() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("out", 1, 1).unwrap();
        let producer = producer(&cluster);
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
        );
        let acks = Acks::new();
        send(&producer, &acks, b"refused").unwrap();
        // Alone in its produce request, the one the broker answers with the error.
        let _ = producer.flush(Duration::from_secs(5));
        send(&producer, &acks, b"a").unwrap();
        send(&producer, &acks, b"b").unwrap();
        assert_eq!(
            answered(&acks).await,
            vec![(
                0,
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                Some(b"refused".to_vec())
            )]
        );
    }

    #[tokio::test]
    async fn a_record_refused_when_handed_over_counts_as_answered_without_a_failure() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("out", 1, 1).unwrap();
        let producer = producer(&cluster);
        let acks = Acks::new();
        send(&producer, &acks, b"a").unwrap();
        // Over message.max.bytes: librdkafka refuses it at once and hands the ticket back,
        // which counts as answered; the caller has the error.
        assert_eq!(
            send(&producer, &acks, &[0; 4000]),
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge
            ))
        );
        send(&producer, &acks, b"c").unwrap();
        assert_eq!(answered(&acks).await, vec![]);
    }
}
