package io.kafkatransit.client;

import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;

/** Kafka's headers as {@link Format3.Header}s and back. */
final class KafkaHeaders {
    private KafkaHeaders() {
    }

    static List<Format3.Header> of(Headers headers) {
        List<Format3.Header> out = new ArrayList<>();
        if (headers != null) {
            for (Header h : headers) {
                out.add(new Format3.Header(h.key(), h.value()));
            }
        }
        return out;
    }

    static boolean protectedRecord(Headers headers) {
        return headers != null && headers.lastHeader(Format3.PROTECTION_HEADER) != null;
    }
}
