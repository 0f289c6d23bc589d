package io.kafkatransit.client;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.errors.RecordDeserializationException;
import org.apache.kafka.common.errors.RecordDeserializationException.DeserializationExceptionOrigin;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.utils.Utils;

/**
 * A Kafka {@link Deserializer} for topics that kafka-transit protected: it opens envelopes
 * ({@code envelope-seal}) and decrypts {@code vault:vN:} values ({@code encrypt-value}), then
 * hands the plaintext to an inner deserializer (default: the bytes as they are;
 * {@value TransitConfig#INNER_DESERIALIZER} names another, e.g. a String or JSON one).
 *
 * <pre>{@code
 * value.deserializer=io.kafkatransit.client.KafkaTransitDeserializer
 * kafka.transit.vault.address=https://vault.example:8200
 * kafka.transit.vault.key=customers
 * kafka.transit.vault.token.file=/var/run/secrets/vault-token
 * }</pre>
 *
 * <p>A value that cannot be read (tampered, wrong key, Vault down) is never returned as
 * data: the deserializer throws a {@link SerializationException} naming the topic, and the
 * consumer's {@code poll} rethrows it as a {@link RecordDeserializationException} that names
 * the partition and offset. Tombstones (null values) stay null.
 *
 * <p>Records sealed per data subject (docs/forgetting.md): set
 * {@value TransitConfig#SUBJECT_KEYS} (e.g. {@code customers-}) instead of the key; a record
 * whose subject was forgotten fails with {@link TransitReadException.Reason#SUBJECT_FORGOTTEN}
 * as the cause. Data keys stay cached at most {@value TransitConfig#CACHE_MAX_AGE_MS} (60 s).
 *
 * <p>Kafka deserializes one record at a time; for a whole poll's worth at once (one Vault
 * request per transit key for all uncached data keys and {@code vault:v} values), consume
 * bytes and call {@link #readAll(Iterable)}.
 */
public class KafkaTransitDeserializer<T> implements Deserializer<T> {
    private TransitReader reader;
    private Deserializer<T> inner;

    /** Configured by consumer properties. */
    public KafkaTransitDeserializer() {
    }

    /** Configured by consumer properties, with this inner deserializer. */
    public KafkaTransitDeserializer(Deserializer<T> inner) {
        this.inner = inner;
    }

    /** With a reader made in code (tests, custom {@link TransitDecrypter}s). */
    public KafkaTransitDeserializer(TransitReader reader, Deserializer<T> inner) {
        this.reader = reader;
        this.inner = inner;
    }

    @Override
    @SuppressWarnings("unchecked")
    public void configure(Map<String, ?> configs, boolean isKey) {
        if (reader == null) {
            reader = TransitReader.from(TransitConfig.from(configs), RecordOptions.from(configs));
        }
        if (inner == null) {
            Object named = configs.get(TransitConfig.INNER_DESERIALIZER);
            try {
                inner = named == null ? (Deserializer<T>) new ByteArrayDeserializer()
                        : named instanceof Class<?> c ? (Deserializer<T>) Utils.newInstance(c)
                        : (Deserializer<T>) Utils.newInstance(named.toString(), Deserializer.class);
            } catch (ClassNotFoundException e) {
                throw new ConfigException(TransitConfig.INNER_DESERIALIZER, named, "class not found");
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
        if (data == null) {
            return inner.deserialize(topic, headers, (byte[]) null);
        }
        byte[] plaintext;
        try {
            if (headers != null && (KafkaHeaders.protectedRecord(headers)
                    || !reader().options().requireBinding().isEmpty())) {
                plaintext = readRecord(topic, headers, data);
            } else {
                plaintext = reader().read(data);
            }
        } catch (TransitReadException e) {
            throw new SerializationException("kafka-transit could not read a value on topic " + topic + ": "
                    + e.getMessage(), e);
        }
        return inner.deserialize(topic, headers, plaintext);
    }

    /**
     * A format 3 value: the record key as received comes from {@link KafkaTransitKeyDeserializer}
     * (Kafka gives a value deserializer no key); sealed headers are added to {@code headers}.
     */
    private byte[] readRecord(String topic, Headers headers, byte[] data) {
        byte[] key = KeyHandoff.consumedKey(headers);
        TransitReader.Read read = reader().readRecord(topic, key, data, KafkaHeaders.of(headers));
        for (Format3.Header h : read.sealed()) {
            headers.add(h.name(), h.value());
        }
        return read.value();
    }

    /**
     * Reads a batch of records consumed as bytes, asking Vault once per transit key for
     * every data key not cached and every {@code vault:v} value among them.
     *
     * @throws RecordDeserializationException for the first record that cannot be read,
     *     naming its topic, partition and offset
     */
    public <K> List<ConsumerRecord<K, T>> readAll(Iterable<ConsumerRecord<K, byte[]>> records) {
        List<ConsumerRecord<K, byte[]>> batch = new ArrayList<>();
        List<byte[]> values = new ArrayList<>();
        for (ConsumerRecord<K, byte[]> record : records) {
            batch.add(record);
            if (record.value() != null) {
                values.add(record.value());
            }
        }
        List<TransitReader.Outcome> outcomes = reader().readAll(values);
        List<ConsumerRecord<K, T>> read = new ArrayList<>(batch.size());
        int next = 0;
        for (ConsumerRecord<K, byte[]> record : batch) {
            byte[] plaintext = null;
            if (record.value() != null) {
                try {
                    plaintext = outcomes.get(next++).plaintext();
                } catch (TransitReadException e) {
                    TopicPartition partition = new TopicPartition(record.topic(), record.partition());
                    throw new RecordDeserializationException(DeserializationExceptionOrigin.VALUE, partition,
                            record.offset(), record.timestamp(), record.timestampType(), null,
                            ByteBuffer.wrap(record.value()), record.headers(),
                            "kafka-transit could not read the value of " + partition + " at offset " + record.offset()
                                    + ": " + e.getMessage(), e);
                }
            }
            read.add(new ConsumerRecord<>(record.topic(), record.partition(), record.offset(), record.timestamp(),
                    record.timestampType(), record.serializedKeySize(), record.serializedValueSize(), record.key(),
                    inner.deserialize(record.topic(), record.headers(), plaintext), record.headers(),
                    record.leaderEpoch(), Optional.empty()));
        }
        return read;
    }

    /** The reader, for its counters. */
    public TransitReader reader() {
        if (reader == null) {
            throw new IllegalStateException("KafkaTransitDeserializer used before configure()");
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
