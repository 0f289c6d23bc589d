package io.kafkatransit.client.schema;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordDeserializationException;
import org.apache.kafka.common.errors.RecordDeserializationException.DeserializationExceptionOrigin;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.Deserializer;

import io.kafkatransit.client.Format3;
import io.kafkatransit.client.KafkaTransitKeyDeserializer;
import io.kafkatransit.client.KeyHandoff;
import io.kafkatransit.client.TransitReadException;

/**
 * A Kafka value {@link Deserializer} for topics that kafka-transit's
 * {@code encrypt-schema-fields} protected: it reads Confluent's wire format itself, gets the
 * writer schema from the Schema Registry by id, decodes the record and opens its protected
 * fields with Vault transit (one batch request per record). It returns what Confluent's
 * generic deserializers return: an Avro {@code GenericRecord} (or other datum), a Protobuf
 * {@code DynamicMessage}, a JSON Schema record's {@code JsonNode}.
 *
 * <pre>{@code
 * value.deserializer=io.kafkatransit.client.schema.KafkaTransitSchemaFieldsDeserializer
 * kafka.transit.vault.address=https://vault.example:8200
 * kafka.transit.vault.key=customers
 * kafka.transit.vault.token.file=/var/run/secrets/vault-token
 * kafka.transit.schema.registry.url=https://registry.example:8081
 * kafka.transit.schema.tags=PII
 * }</pre>
 *
 * <p>Format 3 records ({@code bind}, {@code record_keys}: docs/protected-records.md) are read
 * with the same properties as {@code KafkaTransitDeserializer}'s: {@code kafka.transit.stream}
 * (default: the topic), {@code kafka.transit.require.binding} ({@code stream,key}) and
 * {@code kafka.transit.record.keys.key}. Kafka gives a value deserializer no record key: for
 * records bound to their key, or whose key is encrypted, configure
 * {@code key.deserializer=}{@link KafkaTransitKeyDeserializer} too, which restores the key and
 * hands it as received to this deserializer.
 *
 * <p>A record that cannot be opened is never returned with its ciphertext as data: the
 * deserializer throws a {@link SerializationException} naming the topic (its cause a
 * {@link SchemaFieldsException} with a {@link SchemaFieldsException.Reason}), which
 * {@code poll} rethrows as a {@link RecordDeserializationException} with the partition and
 * offset. Tombstones stay null. For a whole poll with one Vault request per transit key,
 * consume bytes and call {@link #readAll(Iterable)}.
 */
public class KafkaTransitSchemaFieldsDeserializer implements Deserializer<Object> {
    private SchemaFieldsReader reader;

    /** Configured by consumer properties. */
    public KafkaTransitSchemaFieldsDeserializer() {
    }

    /** With a reader made in code (tests, another registry or Vault client). */
    public KafkaTransitSchemaFieldsDeserializer(SchemaFieldsReader reader) {
        this.reader = reader;
    }

    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {
        if (reader == null) {
            reader = SchemaFieldsReader.from(configs);
        }
    }

    @Override
    public Object deserialize(String topic, byte[] data) {
        return deserialize(topic, null, data);
    }

    @Override
    public Object deserialize(String topic, Headers headers, byte[] data) {
        if (data == null) {
            return null;
        }
        if (reader().options().contextFromRecordKey()) {
            throw new SerializationException("kafka-transit could not read a value on topic " + topic
                    + ": its fields' context is the record key, which a value deserializer does not see; "
                    + "consume bytes and call readAll", new SchemaFieldsException(SchemaFieldsException.Reason.CONFIG,
                    "context.from=record-key needs readAll"));
        }
        try {
            // The key as received, handed over by KafkaTransitKeyDeserializer, as
            // KafkaTransitDeserializer gets it: only format 3 records are bound to it.
            byte[] key = headers != null && headers.lastHeader(Format3.PROTECTION_HEADER) != null
                    ? consumedKey(headers) : null;
            OpenedRecord opened = reader().open(input(topic, key, data, headers));
            return opened.value();
        } catch (SchemaFieldsException e) {
            throw new SerializationException("kafka-transit could not read a value on topic " + topic + ": "
                    + e.getMessage(), e);
        }
    }

    private static byte[] consumedKey(Headers headers) {
        try {
            return KeyHandoff.consumedKey(headers);
        } catch (TransitReadException e) {
            throw new SchemaFieldsException(e.reason() == TransitReadException.Reason.CONFIG
                    ? SchemaFieldsException.Reason.CONFIG : SchemaFieldsException.Reason.FLAGS, e.getMessage(), e);
        }
    }

    static SchemaFieldsReader.Input input(String topic, byte[] key, byte[] value, Headers headers) {
        List<byte[]> protection = new ArrayList<>();
        if (headers != null) {
            for (Header h : headers.headers(Format3.PROTECTION_HEADER)) {
                protection.add(h.value());
            }
        }
        return new SchemaFieldsReader.Input(key, value, header(headers, SchemaFieldsReader.KEY_HEADER),
                header(headers, SchemaFieldsReader.POLICY_HEADER), topic, protection);
    }

    private static String header(Headers headers, String name) {
        if (headers == null) {
            return null;
        }
        Header header = headers.lastHeader(name);
        return header == null || header.value() == null ? null : new String(header.value(), StandardCharsets.UTF_8);
    }

    /**
     * Reads a batch of records consumed as bytes (keys as bytes too, for
     * {@code context.from=record-key} and format 3's binding), asking Vault once per transit key
     * for every field among them. Format 3 record keys come back as the source had them: an
     * encrypted {@code byte[]} or {@code String} key is decrypted (one Vault request per key).
     *
     * @throws RecordDeserializationException for the first record that cannot be opened,
     *     naming its topic, partition and offset
     */
    public <K> List<ConsumerRecord<K, Object>> readAll(Iterable<ConsumerRecord<K, byte[]>> records) {
        List<ConsumerRecord<K, byte[]>> batch = new ArrayList<>();
        List<SchemaFieldsReader.Input> inputs = new ArrayList<>();
        for (ConsumerRecord<K, byte[]> record : records) {
            batch.add(record);
            byte[] key = record.key() instanceof byte[] bytes ? bytes
                    : record.key() instanceof String text ? text.getBytes(StandardCharsets.UTF_8) : null;
            inputs.add(input(record.topic(), key, record.value(), record.headers()));
        }
        List<SchemaFieldsReader.Outcome> outcomes = reader().openAll(inputs);
        List<ConsumerRecord<K, Object>> read = new ArrayList<>(batch.size());
        for (int i = 0; i < batch.size(); i++) {
            ConsumerRecord<K, byte[]> record = batch.get(i);
            SchemaFieldsReader.Outcome outcome = outcomes.get(i);
            if (outcome.error() != null) {
                TopicPartition partition = new TopicPartition(record.topic(), record.partition());
                throw new RecordDeserializationException(DeserializationExceptionOrigin.VALUE, partition,
                        record.offset(), record.timestamp(), record.timestampType(), null,
                        ByteBuffer.wrap(record.value()), record.headers(),
                        "kafka-transit could not read the value of " + partition + " at offset " + record.offset()
                                + ": " + outcome.error().getMessage(), outcome.error());
            }
            K key;
            try {
                key = sourceKey(record.key(), inputs.get(i));
            } catch (SchemaFieldsException e) {
                TopicPartition partition = new TopicPartition(record.topic(), record.partition());
                throw new RecordDeserializationException(DeserializationExceptionOrigin.KEY, partition,
                        record.offset(), record.timestamp(), record.timestampType(), null,
                        record.value() == null ? null : ByteBuffer.wrap(record.value()), record.headers(),
                        "kafka-transit could not read the key of " + partition + " at offset " + record.offset()
                                + ": " + e.getMessage(), e);
            }
            read.add(new ConsumerRecord<>(record.topic(), record.partition(), record.offset(), record.timestamp(),
                    record.timestampType(), record.serializedKeySize(), record.serializedValueSize(), key,
                    outcome.record() == null ? null : outcome.record().value(), record.headers(),
                    record.leaderEpoch(), Optional.empty()));
        }
        return read;
    }

    /**
     * A format 3 record's key as its source had it, in the type it was consumed as (the bytes of
     * a {@code String} key are its UTF-8); other keys as they are.
     */
    @SuppressWarnings("unchecked")
    private <K> K sourceKey(K key, SchemaFieldsReader.Input input) {
        if (input.protection().isEmpty() || input.key() == null) {
            return key;
        }
        byte[] restored = reader().sourceKey(input);
        if (restored == input.key()) {
            return key;
        }
        return key instanceof String ? (K) new String(restored, StandardCharsets.UTF_8) : (K) restored;
    }

    /** The reader, for its counters and {@link SchemaFieldsReader#openAll}. */
    public SchemaFieldsReader reader() {
        if (reader == null) {
            throw new IllegalStateException("KafkaTransitSchemaFieldsDeserializer used before configure()");
        }
        return reader;
    }

    @Override
    public void close() {
        if (reader != null) {
            reader.close();
        }
    }
}
