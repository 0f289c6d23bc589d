package io.kafkatransit.client;

import java.util.Map;

import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.utils.Utils;

/**
 * The key side of a format 3 record: restores a key that {@code record_keys = "encrypt"}
 * protected (Vault {@code decrypt} with the stream as context; an HMAC key stays as it is),
 * and hands the key as received to {@link KafkaTransitDeserializer}, which needs it to check
 * a record bound to its key. Configure both when records are bound to their key:
 *
 * <pre>{@code
 * key.deserializer=io.kafkatransit.client.KafkaTransitKeyDeserializer
 * value.deserializer=io.kafkatransit.client.KafkaTransitDeserializer
 * kafka.transit.record.keys.key=customer-ids
 * kafka.transit.inner.key.deserializer=org.apache.kafka.common.serialization.StringDeserializer
 * }</pre>
 */
public class KafkaTransitKeyDeserializer<T> implements Deserializer<T> {
    /** The deserializer of the restored key (default: the bytes as they are). */
    public static final String INNER_KEY_DESERIALIZER = TransitConfig.PREFIX + "inner.key.deserializer";

    private TransitReader reader;
    private Deserializer<T> inner;

    public KafkaTransitKeyDeserializer() {
        KeyHandoff.CONSUMER.markUsed();
    }

    /** With a reader made in code (tests, custom decrypters). */
    public KafkaTransitKeyDeserializer(TransitReader reader, Deserializer<T> inner) {
        this.reader = reader;
        this.inner = inner;
        KeyHandoff.CONSUMER.markUsed();
    }

    @Override
    @SuppressWarnings("unchecked")
    public void configure(Map<String, ?> configs, boolean isKey) {
        if (reader == null) {
            reader = TransitReader.from(TransitConfig.from(configs), RecordOptions.from(configs));
        }
        if (inner == null) {
            Object named = configs.get(INNER_KEY_DESERIALIZER);
            try {
                inner = named == null ? (Deserializer<T>) new ByteArrayDeserializer()
                        : named instanceof Class<?> c ? (Deserializer<T>) Utils.newInstance(c)
                        : (Deserializer<T>) Utils.newInstance(named.toString(), Deserializer.class);
            } catch (ClassNotFoundException e) {
                throw new ConfigException(INNER_KEY_DESERIALIZER, named, "class not found");
            }
        }
        inner.configure(configs, isKey);
    }

    @Override
    public T deserialize(String topic, byte[] data) {
        return deserialize(topic, null, data);
    }

    @Override
    public T deserialize(String topic, Headers headers, byte[] data) {
        if (headers != null) {
            KeyHandoff.CONSUMER.put(headers, data);
        }
        byte[] key = data;
        if (data != null && KafkaHeaders.protectedRecord(headers)) {
            try {
                // The value deserializer checks the flags against the value's; here they only
                // say whether the key is encrypted.
                key = reader().readRecord(topic, data, null, KafkaHeaders.of(headers)).key();
            } catch (TransitReadException e) {
                throw new SerializationException("kafka-transit could not read a key on topic " + topic + ": "
                        + e.getMessage(), e);
            }
        }
        return inner.deserialize(topic, headers, key);
    }

    TransitReader reader() {
        if (reader == null) {
            throw new IllegalStateException("KafkaTransitKeyDeserializer used before configure()");
        }
        return reader;
    }

    @Override
    public void close() {
        if (reader != null) {
            reader.close();
        }
        if (inner != null) {
            inner.close();
        }
    }
}
