//! Records the sink cluster refuses for what they are, not for its state: too large, a
//! record its topic's configuration forbids (no key on a compacted topic, a timestamp out
//! of the topic's bounds). Retrying cannot help and the next record may well go through,
//! so each is that record's failure (`sink-rejected`: dead-lettered or stopping the
//! pipeline, as configured), never a stall of every partition behind it. Any producer on
//! a source topic can write such a record.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// The `kafka-transit.error.kind` of these records.
pub(crate) const SINK_REJECTED: &str = "sink-rejected";

/// Why the sink refused this record, with what to change, if `error` is a refusal of the
/// record itself (and not of the connection, the producer or the cluster).
pub(crate) fn refused_by_sink(error: &KafkaError) -> Option<String> {
    refusal(error.rdkafka_error_code()?, error)
}

fn refusal(code: RDKafkaErrorCode, error: &KafkaError) -> Option<String> {
    let advice = match code {
        RDKafkaErrorCode::MessageSizeTooLarge => {
            "record too large for the sink: raise sink.properties.\"message.max.bytes\" and \
             the sink broker's message.max.bytes (or the topic's max.message.bytes), or \
             pipeline.max_record_bytes"
        }
        RDKafkaErrorCode::InvalidRecord => {
            "the sink broker refused the record as invalid for its topic: a compacted topic \
             (cleanup.policy=compact) takes no record without a key; produce keys, or use a \
             sink topic that is not compacted"
        }
        RDKafkaErrorCode::InvalidTimestamp => {
            "the record's timestamp is out of the sink topic's bounds \
             (message.timestamp.before.max.ms, message.timestamp.after.max.ms): widen them, \
             or set the topic's message.timestamp.type=LogAppendTime"
        }
        _ => return None,
    };
    Some(format!("{advice} ({error})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production_error(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageProduction(code)
    }

    #[test]
    fn refusals_of_the_record_name_what_to_change() {
        let too_large = refused_by_sink(&production_error(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(too_large.unwrap().contains("message.max.bytes"));
        let keyless = refused_by_sink(&production_error(RDKafkaErrorCode::InvalidRecord));
        assert!(keyless.unwrap().contains("cleanup.policy=compact"));
        let timestamp = refused_by_sink(&production_error(RDKafkaErrorCode::InvalidTimestamp));
        assert!(timestamp
            .unwrap()
            .contains("message.timestamp.before.max.ms"));
    }

    #[test]
    fn failures_of_the_cluster_or_producer_are_not_refusals() {
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
            RDKafkaErrorCode::Fatal,
        ] {
            assert_eq!(refused_by_sink(&production_error(code)), None, "{code:?}");
        }
        assert_eq!(refused_by_sink(&KafkaError::Canceled), None);
    }
}
