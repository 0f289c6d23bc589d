package io.kafkatransit.client;

import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;

/**
 * Hands a record's key bytes (as on the sink) from the key (de)serializer to the value
 * (de)serializer of the same record. Kafka calls both on one thread, key first, with the
 * same {@link Headers} object; that object's identity, never a header an attacker could
 * write, says the key belongs to this record.
 *
 * <p>Public only for {@link #consumedKey}, which the value deserializers of other packages
 * ({@code io.kafkatransit.client.schema}) need for records bound to their key.
 */
public final class KeyHandoff {
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

    /**
     * The key as received of the record whose value is being deserialized with {@code headers}
     * (a format 3 record: it has the protection header), as {@link KafkaTransitKeyDeserializer}
     * handed it over; null for a null key (Kafka calls no key deserializer then).
     *
     * @throws TransitReadException ({@link TransitReadException.Reason#CONFIG}) when the record is
     *     bound to its key and no key deserializer of kafka-transit exists in this JVM to hand it
     *     over: binding it to a null key would refuse every keyed record with a misleading
     *     authentication failure
     */
    public static byte[] consumedKey(Headers headers) {
        byte[][] handed = CONSUMER.take(headers);
        if (handed != null) {
            return handed[0];
        }
        if (!CONSUMER.used()) {
            Header flags = headers.lastHeader(Format3.PROTECTION_HEADER);
            if (flags != null && (Format3.parseProtectionHeader(flags.value()) & Format3.KEY) != 0) {
                throw new TransitReadException(TransitReadException.Reason.CONFIG, "the record is bound to its key: "
                        + "set key.deserializer=" + KafkaTransitKeyDeserializer.class.getName()
                        + " so that the value deserializer sees the key");
            }
        }
        return null;
    }

    /** The key handed over for {@code headers}' record: an array holding it, or null if none was. */
    byte[][] take(Headers headers) {
        Entry entry = last.get();
        last.remove();
        return entry != null && entry.headers == headers ? new byte[][] {entry.key} : null;
    }
}
