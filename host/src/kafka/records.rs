//! Kafka messages as policy records and back: keys, values and headers as bytes, and
//! their sizes.

use rdkafka::message::{BorrowedMessage, OwnedHeaders};
use rdkafka::Message;

use crate::policy::{Header, SourceRecord};

/// A consumed record, and why the policy must not be given it, if it must not.
pub struct Consumed {
    pub record: SourceRecord,
    /// Set when the record cannot be represented faithfully to a policy (a header
    /// name that is not UTF-8): the record is refused as invalid input, and `record`
    /// holds a lossy copy for the dead letter.
    pub refused: Option<String>,
}

/// Copies a consumed message into the policy's record type.
///
/// Header names and values are bytes on the wire. rdkafka's `Headers` API panics on a
/// name that is not UTF-8, which any producer can write (`kcat -H $'\xff=x'`), so the
/// headers are read through librdkafka's raw header API instead.
pub fn source_record(message: &BorrowedMessage<'_>) -> Consumed {
    let (headers, refused) = raw_headers(message);
    Consumed {
        record: SourceRecord {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        },
        refused,
    }
}

fn raw_headers(message: &BorrowedMessage<'_>) -> (Vec<Header>, Option<String>) {
    use rdkafka::bindings::{rd_kafka_message_headers, rd_kafka_resp_err_t};
    let mut headers = std::ptr::null_mut();
    // SAFETY: `message.ptr()` is a live message owned by the consumer for the lifetime
    // of `message`; librdkafka only writes the headers pointer, which points into the
    // message and lives as long as it.
    let err = unsafe { rd_kafka_message_headers(message.ptr(), &mut headers) };
    if err != rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
        // RD_KAFKA_RESP_ERR__NOENT: the message has no headers.
        return (Vec::new(), None);
    }
    // SAFETY: `headers` was just returned by librdkafka for this message.
    unsafe { read_headers(headers) }
}

/// Every header of `headers`, in order. A name that is not UTF-8 cannot cross the WIT
/// boundary (`string`): it is kept lossily (invalid bytes as U+FFFD) and reported.
///
/// # Safety
/// `headers` must be a valid librdkafka header list that outlives this call.
unsafe fn read_headers(
    headers: *const rdkafka::bindings::rd_kafka_headers_t,
) -> (Vec<Header>, Option<String>) {
    use rdkafka::bindings::{rd_kafka_header_cnt, rd_kafka_header_get_all, rd_kafka_resp_err_t};
    let count = rd_kafka_header_cnt(headers);
    let mut out = Vec::with_capacity(count);
    let mut refused = None;
    for index in 0..count {
        let mut name = std::ptr::null();
        let mut value = std::ptr::null();
        let mut size = 0;
        let err = rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size);
        if err != rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            break;
        }
        let name = std::ffi::CStr::from_ptr(name).to_bytes();
        let value = (!value.is_null())
            .then(|| std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec());
        let key = match std::str::from_utf8(name) {
            Ok(key) => key.to_string(),
            Err(_) => {
                // The name is the producer's data: say where it is, not what it is.
                refused.get_or_insert_with(|| {
                    format!(
                        "header {} of {count} has a name that is not UTF-8; policies see \
                         header names as text, so the record cannot be protected as it is",
                        index + 1
                    )
                });
                String::from_utf8_lossy(name).into_owned()
            }
        };
        out.push(Header { key, value });
    }
    (out, refused)
}

/// Kafka headers for a produced record.
pub fn owned_headers(headers: &[Header]) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |owned, header| {
            owned.insert(rdkafka::message::Header {
                key: &header.key,
                value: header.value.as_deref(),
            })
        },
    )
}

/// Bytes a record's key and value occupy, for throughput figures.
pub fn record_bytes(key: Option<&[u8]>, value: Option<&[u8]>) -> u64 {
    (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64
}

/// Bytes a source record holds in memory, headers included: what batches are sized by
/// (`pipeline.max_batch_bytes`), so that records with huge headers cannot pile up.
pub fn source_record_bytes(record: &SourceRecord) -> u64 {
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
        .sum();
    record_bytes(record.key.as_deref(), record.value.as_deref()) + headers as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A librdkafka header list built from raw bytes, as a producer may send it.
    struct RawHeaders(*mut rdkafka::bindings::rd_kafka_headers_t);

    impl RawHeaders {
        fn new(headers: &[(&[u8], Option<&[u8]>)]) -> RawHeaders {
            use rdkafka::bindings::{rd_kafka_header_add, rd_kafka_headers_new};
            // SAFETY: a fresh list, filled with pointers into `headers`, which librdkafka copies.
            unsafe {
                let list = rd_kafka_headers_new(headers.len());
                for (name, value) in headers {
                    let (value, size) = value.map_or((std::ptr::null(), 0), |v| {
                        (v.as_ptr().cast::<std::ffi::c_void>(), v.len() as isize)
                    });
                    rd_kafka_header_add(
                        list,
                        name.as_ptr().cast(),
                        name.len() as isize,
                        value,
                        size,
                    );
                }
                RawHeaders(list)
            }
        }
    }

    impl Drop for RawHeaders {
        fn drop(&mut self) {
            // SAFETY: made by `rd_kafka_headers_new`, destroyed once.
            unsafe { rdkafka::bindings::rd_kafka_headers_destroy(self.0) }
        }
    }

    #[test]
    fn header_names_that_are_not_utf8_are_reported_not_panicked_on() {
        let raw = RawHeaders::new(&[
            (b"trace", Some(b"abc")),
            (b"\xff\xfe", Some(b"x")),
            (b"empty", None),
        ]);
        // SAFETY: a valid list, alive for the call.
        let (headers, refused) = unsafe { read_headers(raw.0) };
        assert_eq!(headers.len(), 3, "every header is kept, in order");
        assert_eq!(headers[0].key, "trace");
        assert_eq!(headers[0].value.as_deref(), Some(&b"abc"[..]));
        assert_eq!(headers[1].key, "\u{fffd}\u{fffd}");
        assert_eq!(headers[1].value.as_deref(), Some(&b"x"[..]));
        assert_eq!(headers[2].value, None);
        let refused = refused.expect("the record is refused");
        assert!(
            refused.contains("header 2 of 3") && refused.contains("not UTF-8"),
            "{refused}"
        );

        let raw = RawHeaders::new(&[(b"tenant", Some(b"\xff"))]);
        // SAFETY: as above.
        let (headers, refused) = unsafe { read_headers(raw.0) };
        assert_eq!(refused, None, "values are bytes: anything goes");
        assert_eq!(headers[0].value.as_deref(), Some(&b"\xff"[..]));
    }
}
