package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.Test;

import io.kafkatransit.client.TransitReadException.Reason;

/** TransitWriter's records open in TransitReader; moved, swapped and re-keyed ones are refused. */
class Format3RecordTest {
    static final WriterOptions EVERY_OPTION = new WriterOptions("customers", "encrypt", "customer-ids", true,
            List.of("traceparent"), List.of("stream", "key"), null, "zstd", 256, 1_000_000, Duration.ofHours(1));
    static final List<Format3.Header> SOURCE_HEADERS = List.of(
            new Format3.Header("traceparent", bytes("00-1-01")), new Format3.Header("tenant", bytes("a")),
            new Format3.Header("tenant", bytes("b")), new Format3.Header("flag", null));

    final FakeTransit vault = new FakeTransit();
    final TransitWriter writer = new TransitWriter(vault, EVERY_OPTION);
    final TransitReader reader = new TransitReader(vault, "customers", 10,
            new RecordOptions(null, Set.of("stream", "key"), "customer-ids", 1 << 20));

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    TransitReadException refused(Reason reason, TransitReader r, String topic, byte[] key, byte[] value,
                                 List<Format3.Header> headers) {
        TransitReadException e = assertThrows(TransitReadException.class, () -> r.readRecord(topic, key, value, headers));
        assertEquals(reason, e.reason(), e.getMessage());
        return e;
    }

    @Test
    void everyOptionRoundTripsAndHidesTheHeaders() {
        byte[] value = bytes("{\"total\":12,\"notes\":\"" + "x".repeat(300) + "\"}");
        TransitWriter.Sealed sealed = writer.seal("orders", bytes("customer-42"), value, SOURCE_HEADERS);
        assertTrue(new String(sealed.key(), StandardCharsets.US_ASCII).startsWith("vault:v1:"));
        assertEquals(List.of("traceparent", Format3.PROTECTION_HEADER), sealed.headers().stream()
                .map(Format3.Header::name).toList());
        assertArrayEquals(bytes("3;5f"), sealed.headers().get(1).value());
        assertArrayEquals(sealed.key(), writer.seal("orders", bytes("customer-42"), bytes("v"), List.of()).key(),
                "the same key on the same stream gives the same sink key (partitioning, compaction)");
        TransitReader.Read read = reader.readRecord("orders", sealed.key(), sealed.value(), sealed.headers());
        assertArrayEquals(bytes("customer-42"), read.key());
        assertArrayEquals(value, read.value());
        assertEquals(SOURCE_HEADERS, read.headers());
    }

    @Test
    void aMovedRecordIsRefused() {
        TransitWriter.Sealed sealed = writer.seal("orders", bytes("k"), bytes("v"), SOURCE_HEADERS);
        refused(Reason.AUTHENTICATION, reader, "payments", sealed.key(), sealed.value(), sealed.headers());
        TransitReader copied = new TransitReader(vault, "customers", 10,
                new RecordOptions("orders", Set.of(), "customer-ids", 1 << 20));
        assertArrayEquals(bytes("v"), copied.readRecord("orders.mirror", sealed.key(), sealed.value(),
                sealed.headers()).value());
    }

    @Test
    void aValueSwappedBetweenKeysIsRefused() {
        TransitWriter.Sealed one = writer.seal("orders", bytes("customer-1"), bytes("one"), List.of());
        TransitWriter.Sealed two = writer.seal("orders", bytes("customer-2"), bytes("two"), List.of());
        refused(Reason.AUTHENTICATION, reader, "orders", two.key(), one.value(), one.headers());
        refused(Reason.AUTHENTICATION, reader, "orders", null, one.value(), one.headers());
    }

    @Test
    void aRekeyedEnvelopeIsRefusedByItsCommitment() {
        TransitWriter.Sealed first = writer.seal("orders", bytes("k"), bytes("one"), List.of());
        TransitWriter.Sealed second = new TransitWriter(vault, EVERY_OPTION).seal("orders", bytes("k"), bytes("two"),
                List.of());
        int at = 4 + "customers".length() + 32;
        int w1 = ByteBuffer.wrap(first.value()).getShort(at);
        int w2 = ByteBuffer.wrap(second.value()).getShort(at);
        ByteBuffer forged = ByteBuffer.allocate(first.value().length - w1 + w2);
        forged.put(first.value(), 0, at).put(second.value(), at, 2 + w2)
                .put(first.value(), at + 2 + w1, first.value().length - at - 2 - w1);
        refused(Reason.COMMITMENT, reader, "orders", first.key(), forged.array(), first.headers());
    }

    @Test
    void strippedOrEditedProtectionHeadersAreRefused() {
        TransitWriter.Sealed sealed = writer.seal("orders", bytes("k"), bytes("v"), SOURCE_HEADERS);
        List<Format3.Header> stripped = sealed.headers().subList(0, 1);
        refused(Reason.UNBOUND, reader, "orders", sealed.key(), sealed.value(), stripped);
        TransitReader lenient = new TransitReader(vault, "customers", 10,
                new RecordOptions(null, Set.of(), "customer-ids", 1 << 20));
        refused(Reason.FLAGS, lenient, "orders", sealed.key(), sealed.value(), stripped);
        refused(Reason.FLAGS, reader, "orders", sealed.key(), sealed.value(), List.of(stripped.get(0),
                new Format3.Header(Format3.PROTECTION_HEADER, bytes("3;5b"))));
        List<Format3.Header> doubled = new java.util.ArrayList<>(sealed.headers());
        doubled.add(new Format3.Header(Format3.PROTECTION_HEADER, bytes("3;5f")));
        refused(Reason.FLAGS, reader, "orders", sealed.key(), sealed.value(), doubled);
        // The value-only API refuses a bound record rather than returning its frame.
        assertEquals(Reason.FLAGS, assertThrows(TransitReadException.class, () -> reader.read(sealed.value())).reason());
    }

    @Test
    void requireBindingRefusesUnboundRecords() {
        TransitWriter loose = new TransitWriter(vault, new WriterOptions("customers", "keep", null, false, List.of(),
                List.of("stream"), null, "none", 0, 10, Duration.ofHours(1)));
        TransitWriter.Sealed sealed = loose.seal("orders", bytes("k"), bytes("v"), List.of());
        assertTrue(refused(Reason.UNBOUND, reader, "orders", sealed.key(), sealed.value(), sealed.headers())
                .getMessage().contains("key"));
        assertThrows(org.apache.kafka.common.config.ConfigException.class,
                () -> new RecordOptions(null, Set.of("partition"), null, 1));
    }

    @Test
    void boundVaultValuesAndFields() {
        int flags = Format3.STREAM | Format3.KEY;
        byte[] text = bytes(vault.encrypt("customers", bytes("secret"), null, Format3.binding(flags, "orders",
                bytes("k"), null)));
        List<Format3.Header> headers = List.of(new Format3.Header(Format3.PROTECTION_HEADER, Format3.headerValue(flags)));
        assertArrayEquals(bytes("secret"), reader.readRecord("orders", bytes("k"), text, headers).value());
        refused(Reason.AUTHENTICATION, reader, "payments", bytes("k"), text, headers);
        String field = vault.encrypt("customers", bytes("12345678901234567.89"), null,
                Format3.binding(flags, "orders", bytes("k"), "/amount"));
        assertEquals(Reason.AUTHENTICATION, assertThrows(TransitReadException.class, () -> reader.readFields("orders",
                bytes("k"), bytes("{\"other\":\"" + field + "\"}"), headers)).reason(), "a field moved in the document");
        assertEquals("{\"name\":\"Ada\",\"amount\":12345678901234567.89}", new String(reader.readFields("orders",
                bytes("k"), bytes("{\"name\":\"Ada\",\"amount\":\"" + field + "\"}"), headers), StandardCharsets.UTF_8));
    }

    @Test
    void tombstonesKeepTheirKeyAndDropSealedHeaders() {
        TransitWriter.Sealed sealed = writer.seal("orders", bytes("k"), null, SOURCE_HEADERS);
        assertNull(sealed.value());
        TransitReader.Read read = reader.readRecord("orders", sealed.key(), null, sealed.headers());
        assertArrayEquals(bytes("k"), read.key());
        assertNull(read.value());
        assertEquals(List.of(SOURCE_HEADERS.get(0)), read.headers());
    }

    @Test
    void dataKeysAreRetiredAfterMaxRecordsAndWiped() {
        TransitWriter small = new TransitWriter(vault, new WriterOptions("customers", "keep", null, false, List.of(),
                List.of("stream"), null, "none", 0, 2, Duration.ofHours(1)));
        for (int i = 0; i < 5; i++) {
            small.seal("orders", null, bytes("v"), List.of());
        }
        assertEquals(3, small.dataKeysMinted());
        byte[] material = small.activeMaterial();
        small.close();
        assertArrayEquals(new byte[32], material);
        assertTrue(Arrays.equals(new byte[32], material));
    }

    @Test
    void lz4AndHmacKeys() {
        TransitWriter hmac = new TransitWriter(vault, new WriterOptions("customers", "hmac", "customer-ids", false,
                List.of(), List.of("stream", "key"), null, "lz4", 32, 10, Duration.ofHours(1)));
        TransitWriter.Sealed sealed = hmac.seal("orders", bytes("k"), bytes("a".repeat(1000)), List.of());
        assertArrayEquals(sealed.key(), hmac.seal("orders", bytes("k"), bytes("b"), List.of()).key());
        TransitReader.Read read = reader.readRecord("orders", sealed.key(), sealed.value(), sealed.headers());
        assertArrayEquals(sealed.key(), read.key(), "an HMAC key is one-way: it stays as on the sink");
        assertEquals(1000, read.value().length);
    }
}
