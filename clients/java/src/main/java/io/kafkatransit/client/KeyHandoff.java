package io.kafkatransit.client;

import org.apache.kafka.common.header.Headers;

/**
 * Hands a record's key bytes (as on the sink) from the key (de)serializer to the value
 * (de)serializer of the same record. Kafka calls both on one thread, key first, with the
 * same {@link Headers} object; that object's identity, never a header an attacker could
 * write, says the key belongs to this record.
 */
final class KeyHandoff {
    private record Entry(Headers headers, byte[] key) {
    }

    private final ThreadLocal<Entry> last = new ThreadLocal<>();
    private volatile boolean used;

    static final KeyHandoff CONSUMER = new KeyHandoff();
    static final KeyHandoff PRODUCER = new KeyHandoff();

    void put(Headers headers, byte[] key) {
        used = true;
        last.set(new Entry(headers, key));
    }

    /**
     * A key (de)serializer of kafka-transit exists: Kafka calls no key deserializer for a
     * null key, so a record without a handed key then has a null key.
     */
    void markUsed() {
        used = true;
    }

    /** Whether a key (de)serializer of kafka-transit was made in this JVM. */
    boolean used() {
        return used;
    }

    /** The key handed over for {@code headers}' record: an array holding it, or null if none was. */
    byte[][] take(Headers headers) {
        Entry entry = last.get();
        last.remove();
        return entry != null && entry.headers == headers ? new byte[][] {entry.key} : null;
    }
}
