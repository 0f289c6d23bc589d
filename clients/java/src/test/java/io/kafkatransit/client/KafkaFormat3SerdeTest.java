package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/**
 * The serializers and deserializers as KafkaProducer and KafkaConsumer call them: key first,
 * then value, on one thread, with one Headers object per record.
 */
class KafkaFormat3SerdeTest {
    final FakeTransit vault = new FakeTransit();
    final TransitWriter writer = new TransitWriter(vault, Format3RecordTest.EVERY_OPTION);
    final KafkaTransitKeySerializer<String> keySerializer = new KafkaTransitKeySerializer<>(writer, new StringSerializer());
    final KafkaTransitSerializer<String> valueSerializer = new KafkaTransitSerializer<>(writer, new StringSerializer());
    final TransitReader reader = new TransitReader(vault, "customers", 10,
            new RecordOptions(null, Set.of("stream", "key"), "customer-ids", 1 << 20));
    final KafkaTransitKeyDeserializer<String> keyDeserializer =
            new KafkaTransitKeyDeserializer<>(reader, new StringDeserializer());
    final KafkaTransitDeserializer<String> valueDeserializer = new KafkaTransitDeserializer<>(reader,
            new StringDeserializer());

    record Wire(byte[] key, byte[] value, Headers headers) {
    }

    Wire produce(String topic, String key, String value, Headers headers) {
        byte[] k = keySerializer.serialize(topic, headers, key);
        byte[] v = valueSerializer.serialize(topic, headers, value);
        return new Wire(k, v, new RecordHeaders(headers.toArray()));
    }

    String[] consume(String topic, Wire wire) {
        Headers headers = new RecordHeaders(wire.headers.toArray());
        String key = wire.key == null ? null : keyDeserializer.deserialize(topic, headers, wire.key);
        String value = valueDeserializer.deserialize(topic, headers, wire.value);
        return new String[] {key, value, String.join(",", names(headers))};
    }

    static List<String> names(Headers headers) {
        return java.util.stream.StreamSupport.stream(headers.spliterator(), false).map(Header::key).toList();
    }

    @Test
    void aRecordRoundTripsThroughTheSerializersAndDeserializers() {
        Headers headers = new RecordHeaders();
        headers.add("traceparent", "00-1-01".getBytes(StandardCharsets.UTF_8));
        headers.add("tenant", "a".getBytes(StandardCharsets.UTF_8));
        Wire wire = produce("orders", "customer-42", "{\"total\":12}", headers);
        assertEquals(List.of("traceparent", Format3.PROTECTION_HEADER), names(wire.headers), "tenant is sealed");
        assertTrue(new String(wire.key, StandardCharsets.US_ASCII).startsWith("vault:v1:"));
        String[] read = consume("orders", wire);
        assertEquals("customer-42", read[0]);
        assertEquals("{\"total\":12}", read[1]);
        assertEquals("traceparent," + Format3.PROTECTION_HEADER + ",tenant", read[2]);
    }

    @Test
    void aRecordMovedToAnotherTopicOrKeyIsRefused() {
        Wire one = produce("orders", "customer-1", "one", new RecordHeaders());
        Wire two = produce("orders", "customer-2", "two", new RecordHeaders());
        assertThrows(SerializationException.class, () -> consume("payments", one));
        SerializationException swapped = assertThrows(SerializationException.class,
                () -> consume("orders", new Wire(two.key, one.value, one.headers)));
        assertEquals(TransitReadException.Reason.AUTHENTICATION, ((TransitReadException) swapped.getCause()).reason());
    }

    @Test
    void aNullKeyIsBoundAsNull() {
        Wire wire = produce("orders", null, "v", new RecordHeaders());
        assertNull(wire.key);
        assertArrayEquals(new String[] {null, "v", Format3.PROTECTION_HEADER}, consume("orders", wire));
    }

    @Test
    void aValueSerializerWithoutTheKeySerializerRefusesToWrite() {
        KafkaTransitSerializer<String> alone = new KafkaTransitSerializer<>(writer, new StringSerializer());
        Headers headers = new RecordHeaders();
        headers.add("tenant", "a".getBytes(StandardCharsets.UTF_8));
        SerializationException e = assertThrows(SerializationException.class,
                () -> alone.serialize("orders", headers, "v"));
        assertTrue(e.getMessage().contains("KafkaTransitKeySerializer"), e.getMessage());
        assertEquals(List.of("tenant"), names(headers), "a refused record keeps its headers");
    }

    @Test
    void propertiesConfigureTheWriter() {
        WriterOptions options = WriterOptions.from(Map.of("kafka.transit.vault.key", "customers",
                "kafka.transit.record.keys", "hmac", "kafka.transit.record.keys.key", "ids",
                "kafka.transit.headers", "seal", "kafka.transit.keep.headers", "traceparent, b3",
                "kafka.transit.bind", "stream,key", "kafka.transit.compression", "lz4", "kafka.transit.pad.to", "64"));
        assertEquals(List.of("traceparent", "b3"), options.keepHeaders());
        assertEquals(0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x80, options.flags());
        assertThrows(org.apache.kafka.common.config.ConfigException.class, () -> WriterOptions.from(Map.of(
                "kafka.transit.vault.key", "customers", "kafka.transit.record.keys", "encrypt")));
    }
}
