package io.kafkatransit.client;

import java.util.Map;

import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.Serializer;

/**
 * The key side of {@link KafkaTransitSerializer}: the inner serializer's key bytes protected
 * as {@code kafka.transit.record.keys} says (kept, Vault convergent encryption with the stream
 * as context, or Vault HMAC), handed to the value serializer for the binding. A null key
 * stays null.
 */
public class KafkaTransitKeySerializer<T> implements Serializer<T> {
    /** The serializer of the plaintext key (default: byte arrays as they are). */
    public static final String INNER_KEY_SERIALIZER = TransitConfig.PREFIX + "inner.key.serializer";

    private TransitWriter writer;
    private Serializer<T> inner;

    public KafkaTransitKeySerializer() {
    }

    /** With a writer made in code (tests, custom Vault clients). */
    public KafkaTransitKeySerializer(TransitWriter writer, Serializer<T> inner) {
        this.writer = writer;
        this.inner = inner;
    }

    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {
        if (writer == null) {
            writer = KafkaTransitSerializer.writerFrom(configs);
        }
        if (inner == null) {
            inner = KafkaTransitSerializer.innerSerializer(configs, INNER_KEY_SERIALIZER);
        }
        inner.configure(configs, isKey);
    }

    @Override
    public byte[] serialize(String topic, T data) {
        throw new SerializationException("KafkaTransitKeySerializer needs serialize(topic, headers, data), "
                + "which KafkaProducer calls");
    }

    @Override
    public byte[] serialize(String topic, Headers headers, T data) {
        byte[] key;
        try {
            key = writer.protectKey(topic, inner.serialize(topic, headers, data));
        } catch (TransitReadException e) {
            throw new SerializationException("kafka-transit could not protect a key for topic " + topic + ": "
                    + e.getMessage(), e);
        }
        KeyHandoff.PRODUCER.put(headers, key);
        return key;
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
