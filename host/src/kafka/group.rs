//! The source's consumer group: committed offsets read stably, commits that wait with a
//! bound, rebalances answered, and leaving the group before the consumer closes.
//!
//! Why leave before closing: librdkafka's group calls without a timeout of their own
//! (`rd_kafka_assign`, `rd_kafka_incremental_assign`/`_unassign`,
//! `rd_kafka_consumer_group_metadata`) wait for its main thread to answer, and a call
//! that reaches it just as the group finishes closing is dropped unanswered: the
//! caller waits for ever (librdkafka 2.12; its issue #4884). Closing a consumer that
//! still holds partitions queues a revocation of all of them. If another revocation
//! was already queued, librdkafka takes the answer to that one for both and closes
//! meanwhile, so the answer to the second races the close. That hung runners that
//! stopped in the middle of a rebalance. [`leave_group`] gives every partition up while
//! the group is still open, which leaves the close nothing to answer; [`close_within`]
//! bounds the close all the same.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::TopicPartitionList;

/// Answers a rebalance event: takes `partitions` (`assign`) or gives them up,
/// incrementally when the group rebalances `cooperative`ly, as rdkafka's own callback
/// would, but without asking librdkafka for the protocol (`rd_kafka_rebalance_protocol`
/// is one of the calls that can wait for ever). Returns librdkafka's refusal, if it
/// refused.
pub fn answer_rebalance<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    assign: bool,
    cooperative: bool,
    partitions: &TopicPartitionList,
) -> Result<(), String> {
    use rdkafka::bindings as rd;
    let client = consumer.client().native_ptr();
    // SAFETY: librdkafka's rebalance calls on the consumer's live handle with a valid
    // list (which librdkafka copies) or none; an error object returned is freed here.
    unsafe {
        if cooperative {
            let error = if assign {
                rd::rd_kafka_incremental_assign(client, partitions.ptr())
            } else {
                rd::rd_kafka_incremental_unassign(client, partitions.ptr())
            };
            if error.is_null() {
                return Ok(());
            }
            let message = std::ffi::CStr::from_ptr(rd::rd_kafka_error_string(error))
                .to_string_lossy()
                .into_owned();
            rd::rd_kafka_error_destroy(error);
            Err(message)
        } else {
            let list = if assign {
                partitions.ptr()
            } else {
                std::ptr::null_mut()
            };
            match rd::rd_kafka_assign(client, list) {
                rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
                err => Err(rdkafka::error::RDKafkaErrorCode::from(err).to_string()),
            }
        }
    }
}

/// Leaves `consumer`'s group, if it joined one, before it is closed: unsubscribes,
/// then serves the revocations that follow (and any rebalance queued before them)
/// until nothing is assigned and no event is waiting, at most `limit`. Records that
/// arrive meanwhile are dropped unconsumed: no offset of theirs is committed, so the
/// partitions' next owner reads them.
pub async fn leave_group<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    limit: Duration,
) -> Result<(), String> {
    let joined = consumer
        .subscription()
        .map_err(|error| format!("reading the subscription: {error}"))?;
    if joined.count() == 0 {
        return Ok(());
    }
    consumer.unsubscribe();
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("partitions were still assigned after {limit:?}"));
        }
        // Rebalance events are served inside `recv`; a quiet spell means none waits.
        if tokio::time::timeout(QUIET.min(left), consumer.recv())
            .await
            .is_ok()
        {
            continue;
        }
        let assigned = consumer
            .assignment()
            .map_err(|error| format!("reading the assignment: {error}"))?;
        if assigned.count() == 0 {
            return Ok(());
        }
    }
}

/// How long [`leave_group`] hears nothing before it looks whether anything is left.
const QUIET: Duration = Duration::from_millis(200);

/// Drops `consumer`, which closes it, on a thread of its own, and waits for that at
/// most `limit`. Returns whether the close finished. If it did not, the thread stays
/// behind, blocked in librdkafka (see the module's comment), and the caller goes on:
/// a runner that stops must not hang on it. The thread enters the caller's Tokio
/// runtime, if any: a last rebalance callback may run there.
pub fn close_within<T: Send + 'static>(consumer: T, limit: Duration) -> bool {
    let runtime = tokio::runtime::Handle::try_current().ok();
    let (done, finished) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("consumer-close".to_string())
        .spawn(move || {
            let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
            drop(consumer);
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => finished.recv_timeout(limit).is_ok(),
        // The closure, and the consumer with it, was dropped (closed) right here.
        Err(error) => {
            tracing::debug!("closing the consumer on this thread: {error}");
            true
        }
    }
}

/// The group's committed offsets of `partitions`, stable: a cluster that has just
/// started (or is moving the group's coordinator) answers "not coordinator" or "loading"
/// for a while, and the offsets a still-open transaction sent (exactly once on one
/// cluster; a crashed runner's until the broker aborts it) are "unstable"; both are
/// asked again until `timeout`. A partition is never answered as uncommitted while a
/// transaction holds its offsets: librdkafka's own fetch at assignment can do that
/// (2.12: when the assignment changes while it waits on an open transaction, it starts
/// the partition at `auto.offset.reset`), which would repeat what was committed.
pub fn committed_offsets<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    partitions: &TopicPartitionList,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<TopicPartitionList> {
    use rdkafka::error::RDKafkaErrorCode;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = consumer.committed_offsets(partitions.clone(), left);
        let unstable = match &answer {
            Ok(list) => list
                .elements()
                .iter()
                .find_map(|element| element.error().err()),
            Err(error) => Some(error.clone()),
        };
        let retriable = unstable.as_ref().is_some_and(|error| {
            matches!(
                error.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::NotCoordinator
                        | RDKafkaErrorCode::CoordinatorNotAvailable
                        | RDKafkaErrorCode::CoordinatorLoadInProgress
                        | RDKafkaErrorCode::UnstableOffsetCommit
                )
            )
        });
        match unstable {
            Some(error) if retriable && !left.is_zero() => {
                tracing::debug!("committed offsets not readable yet ({error}); retrying");
                std::thread::sleep(Duration::from_millis(200).min(left));
            }
            // A partition's own error (after the deadline, an open transaction's
            // offsets still unstable) is the answer's error: never read as "no offset".
            Some(error) if answer.is_ok() => return Err(error),
            _ => return answer,
        }
    }
}

/// Commits `offsets` for `consumer`'s group and waits for the coordinator's answer, at
/// most `timeout`. librdkafka's synchronous commit has no timeout of its own: a
/// coordinator that never answers would hold a rebalance (or a stop) for ever. Returns
/// why the commit failed or was not confirmed; either way the records are consumed
/// again by whoever owns the partitions next, so nothing is lost.
pub fn commit_within<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    offsets: &TopicPartitionList,
    timeout: Duration,
) -> Result<(), String> {
    use rdkafka::bindings as rd;
    let client = consumer.client().native_ptr();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `client` is the consumer's live handle and `offsets` a valid list, which
    // librdkafka copies. The queue is ours: the commit's answer is delivered to it as an
    // event, which is destroyed once read; destroying the queue afterwards is safe even
    // if the answer has not come (librdkafka keeps its own reference until then).
    unsafe {
        let queue = rd::rd_kafka_queue_new(client);
        let err =
            rd::rd_kafka_commit_queue(client, offsets.ptr(), queue, None, std::ptr::null_mut());
        let result = if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Err(rdkafka::error::RDKafkaErrorCode::from(err).to_string())
        } else {
            let event = rd::rd_kafka_queue_poll(queue, timeout_ms);
            if event.is_null() {
                Err(format!(
                    "the group coordinator did not confirm the commit within {timeout:?}"
                ))
            } else {
                let err = rd::rd_kafka_event_error(event);
                let result = if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    Ok(())
                } else {
                    Err(rdkafka::error::RDKafkaErrorCode::from(err).to_string())
                };
                rd::rd_kafka_event_destroy(event);
                result
            }
        };
        rd::rd_kafka_queue_destroy(queue);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::RDKafkaRespErr;
    use rdkafka::{ClientConfig, ClientContext};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// A rebalance a member answered: whether it assigned, how many partitions, and
    /// whether the member was being closed then.
    type Answered = (bool, usize, bool);

    /// Answers every rebalance cooperatively, and notes it.
    #[derive(Default)]
    struct Noting {
        answered: Arc<Mutex<Vec<Answered>>>,
        closing: Arc<AtomicBool>,
    }

    impl ClientContext for Noting {}

    impl ConsumerContext for Noting {
        fn rebalance(
            &self,
            consumer: &BaseConsumer<Self>,
            err: RDKafkaRespErr,
            partitions: &mut TopicPartitionList,
        ) {
            let assign = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
            let closing = self.closing.load(Ordering::SeqCst);
            self.answered
                .lock()
                .unwrap()
                .push((assign, partitions.count(), closing));
            answer_rebalance(consumer, assign, true, partitions).unwrap();
        }
    }

    fn member(bootstrap: &str, context: Noting) -> StreamConsumer<Noting> {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "leaving")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("heartbeat.interval.ms", "100")
            .set("session.timeout.ms", "6000")
            .create_with_context(context)
            .unwrap()
    }

    /// How many events wait in `consumer`'s queue (no records are produced here).
    fn queued(consumer: &StreamConsumer<Noting>) -> usize {
        use rdkafka::bindings as rd;
        // SAFETY: the consumer's live handle; the queue reference taken is released.
        unsafe {
            let queue = rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr());
            let length = rd::rd_kafka_queue_length(queue);
            rd::rd_kafka_queue_destroy(queue);
            length
        }
    }

    async fn poll_for(consumer: &StreamConsumer<Noting>, duration: Duration) {
        let _ = tokio::time::timeout(duration, async {
            loop {
                let _ = consumer.recv().await;
            }
        })
        .await;
    }

    /// A runner stopping while a revocation waits in its consumer's queue: closing the
    /// consumer then would queue a second revocation, which librdkafka answers itself by
    /// the first and which can outlive the close (see the module's comment). Leaving the
    /// group first answers both while the group is open, and the close answers nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leaving_the_group_answers_a_queued_revocation_before_the_close() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 4, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let first_context = Noting::default();
        let (answered, closing) = (
            first_context.answered.clone(),
            first_context.closing.clone(),
        );
        let first = member(&bootstrap, first_context);
        first.subscribe(&["t"]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while answered.lock().unwrap().as_slice() != [(true, 4, false)] {
            assert!(
                Instant::now() < deadline,
                "the first member never got the partitions"
            );
            poll_for(&first, Duration::from_millis(100)).await;
        }
        // Whatever else the assignment queued is served now.
        poll_for(&first, Duration::from_secs(1)).await;

        // A second member joins; the first, no longer polled, is asked to give up half
        // of its partitions, and that revocation waits in its queue.
        let second = Arc::new(member(&bootstrap, Noting::default()));
        second.subscribe(&["t"]).unwrap();
        let polled = second.clone();
        let polling =
            tokio::spawn(async move { poll_for(&polled, Duration::from_secs(120)).await });
        let deadline = Instant::now() + Duration::from_secs(60);
        while queued(&first) == 0 {
            assert!(
                Instant::now() < deadline,
                "the first member was never asked to revoke"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        leave_group(&first, Duration::from_secs(30)).await.unwrap();
        closing.store(true, Ordering::SeqCst);
        assert!(
            close_within(first, Duration::from_secs(20)),
            "closing the first member hung"
        );
        let answered = answered.lock().unwrap().clone();
        assert_eq!(
            (answered[1].0, answered[1].1),
            (false, 2),
            "a partial revocation was to be queued when the member left: {answered:?}"
        );
        assert!(
            answered.iter().all(|&(_, _, closing)| !closing),
            "the close still had rebalances to answer: {answered:?}"
        );
        let revoked: usize = answered
            .iter()
            .filter(|&&(assign, _, _)| !assign)
            .map(|&(_, count, _)| count)
            .sum();
        assert_eq!(revoked, 4, "every partition given up: {answered:?}");
        polling.abort();
        leave_group(&second, Duration::from_secs(30)).await.unwrap();
    }

    /// Stands for a consumer whose close never finishes.
    struct Stuck(std::sync::mpsc::Receiver<()>);

    impl Drop for Stuck {
        fn drop(&mut self) {
            let _ = self.0.recv();
        }
    }

    #[test]
    fn a_close_that_does_not_finish_is_left_behind_after_the_limit() {
        let (_never, stuck) = std::sync::mpsc::channel();
        let started = Instant::now();
        assert!(!close_within(Stuck(stuck), Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(5));

        let (finish, finishing) = std::sync::mpsc::channel();
        finish.send(()).unwrap();
        assert!(close_within(Stuck(finishing), Duration::from_secs(5)));
    }
}
