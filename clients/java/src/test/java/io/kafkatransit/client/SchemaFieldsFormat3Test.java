package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.Test;

import io.kafkatransit.client.schema.KafkaTransitSchemaFieldsDeserializer;
import io.kafkatransit.client.schema.RegisteredSchema;
import io.kafkatransit.client.schema.SchemaFieldsException;
import io.kafkatransit.client.schema.SchemaFieldsException.Reason;
import io.kafkatransit.client.schema.SchemaFieldsOptions;
import io.kafkatransit.client.schema.SchemaFieldsReader;

/**
 * Format 3 schema'd records (docs/protected-records.md with the located path as the field
 * part): each field encrypted by {@link FakeTransit} with associated data written here by the
 * letter of the docs, not with {@link Format3#binding}; FakeTransit's AES-GCM then fails
 * authentication ("message authentication failed", as Vault) unless the reader sends exactly
 * that binding.
 */
class SchemaFieldsFormat3Test {
    static final String TOPIC = "customers.protected";
    static final byte[] KEY = "customer-42".getBytes(StandardCharsets.UTF_8);
    /** The located paths of {@link SchemaFieldsAvroTest#customer} (attributes included), in body order. */
    static final List<String> PATHS = List.of("/name", "/email", "/address/street", "/phones/0/number",
            "/phones/1/number", "/photo", "/billing/street", "/attributes/tier", "/attributes/a~1b~0c");

    final SchemaFieldsAvroTest avro = new SchemaFieldsAvroTest();
    final FakeTransit transit = avro.transit;
    /** Every item the reader sent to Vault for fields (transit key "customers"). */
    final List<TransitDecrypter.Item> asked = new ArrayList<>();
    final TransitDecrypter vault = new TransitDecrypter() {
        @Override
        public List<Decryption> decrypt(String keyName, List<String> ciphertexts) {
            return decryptItems(keyName, ciphertexts.stream().map(c -> new Item(c, null, null)).toList());
        }

        @Override
        public List<Decryption> decryptItems(String keyName, List<Item> items) {
            if (keyName.equals("customers")) {
                asked.addAll(items);
            }
            return transit.decryptItems(keyName, items);
        }
    };

    /** The binding as docs/protected-records.md spells it, byte by byte. */
    static byte[] expectedBinding(int flags, String stream, byte[] key, String path) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes("kafka-transit/3".getBytes(StandardCharsets.US_ASCII));
        out.write(flags);
        if ((flags & 0x01) != 0) {
            byte[] s = stream.getBytes(StandardCharsets.UTF_8);
            out.writeBytes(ByteBuffer.allocate(2).putShort((short) s.length).array());
            out.writeBytes(s);
        }
        if ((flags & 0x02) != 0) {
            if (key == null) {
                out.write(0);
            } else {
                out.write(1);
                out.writeBytes(ByteBuffer.allocate(4).putInt(key.length).array());
                out.writeBytes(key);
            }
        }
        byte[] p = path.getBytes(StandardCharsets.UTF_8);
        out.writeBytes(ByteBuffer.allocate(4).putInt(p.length).array());
        out.writeBytes(p);
        return out.toByteArray();
    }

    /** The customer as encrypt-schema-fields writes it with these flags, to this stream, under this sink key. */
    GenericRecord protectedRecord(int flags, String stream, byte[] sinkKey) {
        avro.associatedData = path -> expectedBinding(flags, stream, sinkKey, path);
        try {
            return avro.protect(SchemaFieldsAvroTest.customer(true), true, false);
        } finally {
            avro.associatedData = path -> null;
        }
    }

    static byte[] wire(GenericRecord record) {
        return SchemaFieldsAvroTest.frame(SchemaFieldsAvroTest.ID,
                SchemaFieldsAvroTest.avro(SchemaFieldsAvroTest.SCHEMA, record));
    }

    byte[] value(int flags, String stream, byte[] sinkKey) {
        return wire(protectedRecord(flags, stream, sinkKey));
    }

    static List<Format3.Header> headers(byte[]... protection) {
        List<Format3.Header> out = new ArrayList<>();
        out.add(new Format3.Header("kafka-transit.policy", "encrypt-schema-fields".getBytes(StandardCharsets.UTF_8)));
        out.add(new Format3.Header("kafka-transit.key", "customers".getBytes(StandardCharsets.UTF_8)));
        for (byte[] p : protection) {
            out.add(new Format3.Header(Format3.PROTECTION_HEADER, p));
        }
        return out;
    }

    static List<Format3.Header> headers(int flags) {
        return headers(Format3.headerValue(flags));
    }

    SchemaFieldsOptions options() {
        return SchemaFieldsOptions.tagged("customers").withFields("/attributes");
    }

    SchemaFieldsReader reader(RecordOptions records) {
        return new SchemaFieldsReader(SchemaFieldsTestSupport.source(SchemaFieldsAvroTest.ID, new RegisteredSchema(
                RegisteredSchema.Type.AVRO, SchemaFieldsAvroTest.CUSTOMER)), vault, options().withRecords(records));
    }

    SchemaFieldsReader reader() {
        return reader(RecordOptions.DEFAULT);
    }

    static RecordOptions requiring(String... what) {
        return new RecordOptions(null, Set.of(what), null, Format3.DEFAULT_MAX_PLAINTEXT);
    }

    SchemaFieldsException refused(SchemaFieldsReader reader, SchemaFieldsReader.Input input) {
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class, () -> reader.open(input));
        // Messages never hold record data: the key, map keys, plaintexts, ciphertexts.
        for (String data : List.of("customer-4", "tier", "a~1b", "Ada", "vault:v1:")) {
            assertFalse(e.getMessage().contains(data), e.getMessage());
        }
        return e;
    }

    @Test
    void aBoundRecordOpensWithEachFieldsBindingAsAssociatedData() {
        GenericRecord plain = SchemaFieldsAvroTest.customer(true);
        for (int flags : new int[] {0x00, 0x01, 0x02, 0x03}) {
            asked.clear();
            byte[] value = value(flags, TOPIC, KEY);
            assertEquals(plain, reader().open(SchemaFieldsReader.Input.of(TOPIC, KEY, value, headers(flags))).value());
            List<byte[]> expected = PATHS.stream().map(p -> expectedBinding(flags, TOPIC, KEY, p)).toList();
            assertEquals(expected.size(), asked.size());
            for (int i = 0; i < expected.size(); i++) {
                assertArrayEquals(expected.get(i), asked.get(i).associatedData(), PATHS.get(i));
                assertArrayEquals(expected.get(i), Format3.binding(flags, TOPIC, KEY, PATHS.get(i)), PATHS.get(i));
                assertNull(asked.get(i).context());
            }
        }
        // A null record key is bound as one.
        byte[] value = value(0x03, TOPIC, null);
        assertEquals(plain, reader().open(SchemaFieldsReader.Input.of(TOPIC, null, value, headers(0x03))).value());
        // A format 2 record as before: no associated data.
        asked.clear();
        assertEquals(plain, reader().open(SchemaFieldsReader.Input.of(TOPIC, KEY, wire(avro.protect(plain, true,
                false)), headers())).value());
        assertTrue(asked.stream().allMatch(i -> i.associatedData() == null));
    }

    @Test
    void aFieldMovedToAnotherPlaceKeyOrStreamIsRefused() {
        GenericRecord moved = protectedRecord(0x03, TOPIC, KEY);
        Object name = moved.get("name");
        GenericRecord address = (GenericRecord) moved.get("address");
        moved.put("name", address.get("street"));
        address.put("street", name);
        SchemaFieldsReader reader = reader();
        SchemaFieldsException e = refused(reader, SchemaFieldsReader.Input.of(TOPIC, KEY, wire(moved), headers(0x03)));
        assertEquals(Reason.AUTHENTICATION, e.reason());
        assertTrue(e.getMessage().contains("another place"), e.getMessage());

        byte[] value = value(0x03, TOPIC, KEY);
        assertEquals(Reason.AUTHENTICATION, refused(reader, SchemaFieldsReader.Input.of(TOPIC,
                "customer-43".getBytes(StandardCharsets.UTF_8), value, headers(0x03))).reason());
        assertEquals(Reason.AUTHENTICATION, refused(reader, SchemaFieldsReader.Input.of(TOPIC, null, value,
                headers(0x03))).reason());
        assertEquals(Reason.AUTHENTICATION, refused(reader, SchemaFieldsReader.Input.of("customers.copy", KEY, value,
                headers(0x03))).reason());
        // The flags are authenticated too: a header edited to bind less fails.
        assertEquals(Reason.AUTHENTICATION, refused(reader, SchemaFieldsReader.Input.of(TOPIC, KEY, value,
                headers(0x01))).reason());
        // Stripped: read as format 2, Vault refuses (no associated data).
        assertEquals(Reason.VAULT, refused(reader, SchemaFieldsReader.Input.of(TOPIC, KEY, value, headers())).reason());
        // A mirrored topic opens with the stream the writer bound.
        assertEquals(SchemaFieldsAvroTest.customer(true), reader(new RecordOptions(TOPIC, Set.of(), null,
                Format3.DEFAULT_MAX_PLAINTEXT)).open(SchemaFieldsReader.Input.of("dc2." + TOPIC, KEY, value,
                headers(0x03))).value());
        // Bound to its stream, of an unknown topic.
        assertEquals(Reason.CONFIG, refused(reader, new SchemaFieldsReader.Input(KEY, value, "customers", null, null,
                List.of(Format3.headerValue(0x03)))).reason());
    }

    @Test
    void requireBindingRefusesRecordsBoundToLessBeforeAskingVault() {
        SchemaFieldsReader strict = reader(requiring("stream", "key"));
        byte[] format2 = wire(avro.protect(SchemaFieldsAvroTest.customer(true), true, false));
        SchemaFieldsException e = refused(strict, SchemaFieldsReader.Input.of(TOPIC, KEY, format2, headers()));
        assertEquals(Reason.UNBOUND, e.reason());
        assertTrue(e.getMessage().contains(Format3.PROTECTION_HEADER), e.getMessage());
        assertEquals(Reason.UNBOUND, refused(strict, SchemaFieldsReader.Input.of(value(0x00, TOPIC, KEY))).reason());
        assertEquals(Reason.UNBOUND, refused(strict, SchemaFieldsReader.Input.of(TOPIC, KEY, value(0x01, TOPIC, KEY),
                headers(0x01))).reason());
        assertEquals(Reason.UNBOUND, refused(reader(requiring("stream")), SchemaFieldsReader.Input.of(TOPIC, KEY,
                value(0x02, TOPIC, KEY), headers(0x02))).reason());
        assertTrue(asked.isEmpty(), "refused before Vault");
        assertEquals(0, strict.vaultRequests());
        assertEquals(SchemaFieldsAvroTest.customer(true), strict.open(SchemaFieldsReader.Input.of(TOPIC, KEY,
                value(0x03, TOPIC, KEY), headers(0x03))).value());
        // Deterministic fields are never bound: requiring a binding would refuse them all.
        assertThrows(IllegalArgumentException.class, () -> options().deterministic(true)
                .withRecords(requiring("key")));
    }

    @Test
    void flagsAFieldRecordNeverCarriesAreRefused() {
        SchemaFieldsReader reader = reader();
        byte[] value = value(0x03, TOPIC, KEY);
        for (int body : new int[] {0x04, 0x08, 0x10, 0x20}) {
            SchemaFieldsException e = refused(reader, SchemaFieldsReader.Input.of(TOPIC, KEY, value,
                    headers(0x03 | body)));
            assertEquals(Reason.FLAGS, e.reason());
            assertTrue(e.getMessage().contains("never carry sealed headers, padding or compression"), e.getMessage());
        }
        List<List<Format3.Header>> malformed = List.of(headers(0x33), headers(0xc3),
                headers("3;3".getBytes(StandardCharsets.US_ASCII)), headers("2;03".getBytes(StandardCharsets.US_ASCII)),
                headers("3;zz".getBytes(StandardCharsets.US_ASCII)), headers((byte[]) null),
                headers(Format3.headerValue(0x03), Format3.headerValue(0x03)));
        for (List<Format3.Header> h : malformed) {
            assertEquals(Reason.FLAGS, refused(reader, SchemaFieldsReader.Input.of(TOPIC, KEY, value, h)).reason(),
                    h.toString());
        }
        assertTrue(asked.isEmpty(), "refused before Vault");
    }

    @Test
    void anEncryptedRecordKeyIsRestoredAndTheFieldsAreBoundToItAsReceived() {
        byte[] sinkKey = transit.encrypt("customer-ids", KEY, TOPIC.getBytes(StandardCharsets.UTF_8), null)
                .getBytes(StandardCharsets.US_ASCII);
        byte[] value = value(0x43, TOPIC, sinkKey);
        RecordOptions records = new RecordOptions(null, Set.of("stream", "key"), "customer-ids",
                Format3.DEFAULT_MAX_PLAINTEXT);
        SchemaFieldsReader reader = reader(records);
        SchemaFieldsReader.Input input = SchemaFieldsReader.Input.of(TOPIC, sinkKey, value, headers(0x43));
        assertEquals(SchemaFieldsAvroTest.customer(true), reader.open(input).value());
        assertArrayEquals(KEY, reader.sourceKey(input));
        // Its tombstone: the key restored too.
        assertArrayEquals(KEY, reader.sourceKey(SchemaFieldsReader.Input.of(TOPIC, sinkKey, null, headers(0x43))));
        // Restored with the stream as context: another topic's key does not decrypt here.
        assertEquals(Reason.AUTHENTICATION, assertThrows(SchemaFieldsException.class, () -> reader.sourceKey(
                SchemaFieldsReader.Input.of("customers.copy", sinkKey, value, headers(0x43)))).reason());
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class, () -> reader().sourceKey(input));
        assertEquals(Reason.CONFIG, e.reason());
        assertTrue(e.getMessage().contains(RecordOptions.RECORD_KEYS_KEY), e.getMessage());
        // A kept key passes as it is.
        assertArrayEquals(KEY, reader().sourceKey(SchemaFieldsReader.Input.of(TOPIC, KEY, value, headers(0x03))));
        // An HMAC'd key cannot be restored: its record is refused unless such keys are kept.
        byte[] hmac = transit.hmac("customer-ids", KEY).getBytes(StandardCharsets.US_ASCII);
        byte[] hmacValue = value(0x83, TOPIC, hmac);
        SchemaFieldsReader.Input hmacInput = SchemaFieldsReader.Input.of(TOPIC, hmac, hmacValue, headers(0x83));
        assertEquals(Reason.HMAC_KEY, refused(reader(), hmacInput).reason());
        assertEquals(Reason.HMAC_KEY, assertThrows(SchemaFieldsException.class,
                () -> reader().sourceKey(hmacInput)).reason());
        SchemaFieldsReader keeping = new SchemaFieldsReader(SchemaFieldsTestSupport.source(SchemaFieldsAvroTest.ID,
                new RegisteredSchema(RegisteredSchema.Type.AVRO, SchemaFieldsAvroTest.CUSTOMER)), vault,
                options().keepHmacKeys(true));
        assertEquals(SchemaFieldsAvroTest.customer(true), keeping.open(hmacInput).value());
        assertArrayEquals(hmac, keeping.sourceKey(hmacInput));
        // A null key is no HMAC.
        assertEquals(SchemaFieldsAvroTest.customer(true), reader().open(SchemaFieldsReader.Input.of(TOPIC, null,
                value(0x83, TOPIC, null), headers(0x83))).value());
        // The record key is not the source's: it cannot be the fields' context.
        SchemaFieldsReader byKey = new SchemaFieldsReader(SchemaFieldsTestSupport.source(SchemaFieldsAvroTest.ID,
                new RegisteredSchema(RegisteredSchema.Type.AVRO, SchemaFieldsAvroTest.CUSTOMER)), vault,
                options().withRecordKeyContext().withRecords(records));
        assertEquals(Reason.CONFIG, refused(byKey, input).reason());

        // readAll gives the key back as the source had it.
        try (var deserializer = new KafkaTransitSchemaFieldsDeserializer(reader)) {
            ConsumerRecord<byte[], byte[]> bytes = new ConsumerRecord<>(TOPIC, 0, 0, sinkKey, value);
            headers(0x43).forEach(h -> bytes.headers().add(h.name(), h.value()));
            var read = deserializer.readAll(List.of(bytes));
            assertArrayEquals(KEY, read.get(0).key());
            assertEquals(SchemaFieldsAvroTest.customer(true), read.get(0).value());
            ConsumerRecord<String, byte[]> text = new ConsumerRecord<>(TOPIC, 0, 0,
                    new String(sinkKey, StandardCharsets.US_ASCII), value);
            headers(0x43).forEach(h -> text.headers().add(h.name(), h.value()));
            assertEquals("customer-42", deserializer.readAll(List.of(text)).get(0).key());
        }
    }

    @Test
    void theKafkaDeserializersHandTheKeyAsReceivedToTheValueDeserializer() {
        byte[] sinkKey = transit.encrypt("customer-ids", KEY, TOPIC.getBytes(StandardCharsets.UTF_8), null)
                .getBytes(StandardCharsets.US_ASCII);
        byte[] value = value(0x43, TOPIC, sinkKey);
        RecordOptions records = new RecordOptions(null, Set.of("stream", "key"), "customer-ids",
                Format3.DEFAULT_MAX_PLAINTEXT);
        try (var keys = new KafkaTransitKeyDeserializer<>(new TransitReader(transit, "customers", 10, records),
                new StringDeserializer());
             var values = new KafkaTransitSchemaFieldsDeserializer(reader(records))) {
            // As KafkaConsumer calls them: the key, then the value, with one Headers object.
            Headers kafkaHeaders = new RecordHeaders();
            headers(0x43).forEach(h -> kafkaHeaders.add(h.name(), h.value()));
            assertEquals("customer-42", keys.deserialize(TOPIC, kafkaHeaders, sinkKey));
            assertEquals(SchemaFieldsAvroTest.customer(true), values.deserialize(TOPIC, kafkaHeaders, value));

            // The value of another record under this record's key.
            byte[] otherKey = transit.encrypt("customer-ids", "customer-43".getBytes(StandardCharsets.UTF_8),
                    TOPIC.getBytes(StandardCharsets.UTF_8), null).getBytes(StandardCharsets.US_ASCII);
            Headers other = new RecordHeaders(kafkaHeaders.toArray());
            keys.deserialize(TOPIC, other, otherKey);
            SerializationException e = assertThrows(SerializationException.class,
                    () -> values.deserialize(TOPIC, other, value));
            assertEquals(Reason.AUTHENTICATION, ((SchemaFieldsException) e.getCause()).reason());
            assertTrue(e.getMessage().contains(TOPIC), e.getMessage());
            // A null key: no key deserializer call, the value is bound to a null key.
            Headers nullKey = new RecordHeaders(kafkaHeaders.toArray());
            e = assertThrows(SerializationException.class, () -> values.deserialize(TOPIC, nullKey, value));
            assertEquals(Reason.AUTHENTICATION, ((SchemaFieldsException) e.getCause()).reason());
            // A format 2 record, refused as unbound.
            Headers unbound = new RecordHeaders();
            e = assertThrows(SerializationException.class, () -> values.deserialize(TOPIC, unbound,
                    wire(avro.protect(SchemaFieldsAvroTest.customer(true), true, false))));
            assertEquals(Reason.UNBOUND, ((SchemaFieldsException) e.getCause()).reason());
        }
        // The key deserializer of bytes hands the same bytes.
        try (var keys = new KafkaTransitKeyDeserializer<>(new TransitReader(transit, null, 10, RecordOptions.DEFAULT),
                new ByteArrayDeserializer());
             var values = new KafkaTransitSchemaFieldsDeserializer(reader())) {
            Headers kafkaHeaders = new RecordHeaders();
            headers(0x03).forEach(h -> kafkaHeaders.add(h.name(), h.value()));
            byte[] bound = value(0x03, TOPIC, KEY);
            assertTrue(Arrays.equals(KEY, keys.deserialize(TOPIC, kafkaHeaders, KEY)));
            assertEquals(SchemaFieldsAvroTest.customer(true), values.deserialize(TOPIC, kafkaHeaders, bound));
        }
    }
}
