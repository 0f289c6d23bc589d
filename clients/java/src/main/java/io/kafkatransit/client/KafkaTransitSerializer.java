package io.kafkatransit.client;

import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Utils;

/**
 * A Kafka {@link Serializer} that writes format 3 records in the producer, as the host's
 * {@code envelope-seal} would (docs/protected-records.md): the inner serializer's bytes sealed
 * in a version 3 envelope, headers sealed into it ({@code kafka.transit.headers=seal}, all
 * but {@code kafka.transit.keep.headers} and {@code kafka-transit.*}), bound to the stream
 * and key, compressed and padded, and the protection header added.
 *
 * <pre>{@code
 * key.serializer=io.kafkatransit.client.KafkaTransitKeySerializer
 * value.serializer=io.kafkatransit.client.KafkaTransitSerializer
 * kafka.transit.vault.address=https://vault.example:8200
 * kafka.transit.vault.key=customers
 * kafka.transit.record.keys=encrypt
 * kafka.transit.record.keys.key=customer-ids
 * kafka.transit.headers=seal
 * kafka.transit.bind=stream,key
 * kafka.transit.compression=zstd
 * kafka.transit.pad.to=256
 * }</pre>
 *
 * <p>Kafka gives a value serializer no key: when records are bound to their key or their
 * keys are protected, {@link KafkaTransitKeySerializer} must be the key serializer; it hands
 * over the key as it goes to the sink, and this serializer refuses to write without it.
 */
public class KafkaTransitSerializer<T> implements Serializer<T> {
    /** The serializer of the plaintext value (default: byte arrays as they are). */
    public static final String INNER_SERIALIZER = TransitConfig.PREFIX + "inner.serializer";

    private TransitWriter writer;
    private Serializer<T> inner;

    public KafkaTransitSerializer() {
    }

    /** With a writer made in code (tests, custom Vault clients). */
    public KafkaTransitSerializer(TransitWriter writer, Serializer<T> inner) {
        this.writer = writer;
        this.inner = inner;
    }

    @SuppressWarnings("unchecked")
    static <S> Serializer<S> innerSerializer(Map<String, ?> configs, String property) {
        Object named = configs.get(property);
        try {
            return named == null ? (Serializer<S>) new ByteArraySerializer()
                    : named instanceof Class<?> c ? (Serializer<S>) Utils.newInstance(c)
                    : (Serializer<S>) Utils.newInstance(named.toString(), Serializer.class);
        } catch (ClassNotFoundException e) {
            throw new ConfigException(property, named, "class not found");
        }
    }

    static TransitWriter writerFrom(Map<String, ?> configs) {
        return new TransitWriter(VaultTransit.from(TransitConfig.from(configs)), WriterOptions.from(configs));
    }

    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {
        if (writer == null) {
            writer = writerFrom(configs);
        }
        if (inner == null) {
            inner = innerSerializer(configs, INNER_SERIALIZER);
        }
        inner.configure(configs, isKey);
    }

    @Override
    public byte[] serialize(String topic, T data) {
        throw new SerializationException("kafka-transit seals headers and binds records: KafkaTransitSerializer "
                + "needs serialize(topic, headers, data), which KafkaProducer calls");
    }

    @Override
    public byte[] serialize(String topic, Headers headers, T data) {
        TransitWriter w = writer();
        byte[][] handed = KeyHandoff.PRODUCER.take(headers);
        boolean needsKey = (w.flags() & (Format3.KEY | Format3.RECORD_KEYS)) != 0;
        if (needsKey && handed == null) {
            throw new SerializationException("kafka-transit binds or protects record keys: set key.serializer="
                    + KafkaTransitKeySerializer.class.getName() + " (a value serializer sees no key)");
        }
        byte[] plaintext = inner.serialize(topic, headers, data);
        List<Format3.Header> all = KafkaHeaders.of(headers);
        byte[] sealed;
        try {
            sealed = plaintext == null ? null
                    : w.sealValue(topic, handed == null ? null : handed[0], plaintext, all);
        } catch (TransitReadException e) {
            throw new SerializationException("kafka-transit could not seal a value for topic " + topic + ": "
                    + e.getMessage(), e);
        }
        // Only now change the headers: a failure above leaves the record as it was (and unsent).
        Set<String> drop = new HashSet<>();
        for (Header h : headers) {
            if (!w.keepsInClear(h.key()) || h.key().equals(Format3.PROTECTION_HEADER)) {
                drop.add(h.key());
            }
        }
        drop.forEach(headers::remove);
        headers.add(Format3.PROTECTION_HEADER, Format3.headerValue(w.flags()));
        return sealed;
    }

    TransitWriter writer() {
        if (writer == null) {
            throw new IllegalStateException("KafkaTransitSerializer used before configure()");
        }
        return writer;
    }

    @Override
    public void close() {
        if (writer != null) {
            writer.close();
        }
        if (inner != null) {
            inner.close();
        }
    }
}
