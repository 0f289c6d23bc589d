package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.util.Utf8;
import org.junit.jupiter.api.Test;

import io.kafkatransit.client.schema.OpenedRecord;
import io.kafkatransit.client.schema.RegisteredSchema;
import io.kafkatransit.client.schema.SchemaFieldsException;
import io.kafkatransit.client.schema.SchemaFieldsException.Reason;
import io.kafkatransit.client.schema.SchemaFieldsOptions;
import io.kafkatransit.client.schema.SchemaFieldsReader;

/**
 * Avro records protected as docs/schema-fields.md says (each tagged string field's content
 * replaced by its transit ciphertext text, a bytes field by that text's UTF-8), by hand with
 * {@link FakeTransit}, then opened by {@link SchemaFieldsReader}.
 */
class SchemaFieldsAvroTest {
    static final String CUSTOMER = """
            {"type": "record", "name": "Customer", "namespace": "kafkatransit.test", "fields": [
              {"name": "id", "type": "long"},
              {"name": "name", "type": "string", "confluent:tags": ["PII"]},
              {"name": "email", "type": ["null", "string"], "default": null, "confluent:tags": ["PII"]},
              {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
                {"name": "street", "type": "string", "confluent:tags": ["PII"]},
                {"name": "city", "type": "string"}]}},
              {"name": "phones", "type": {"type": "array", "items": {"type": "record", "name": "Phone", "fields": [
                {"name": "kind", "type": "string"},
                {"name": "number", "type": "string", "confluent:tags": ["PII"]}]}}},
              {"name": "photo", "type": ["null", "bytes"], "default": null, "confluent:tags": ["PII"]},
              {"name": "billing", "type": ["null", "Address"], "default": null},
              {"name": "notes", "type": "string"},
              {"name": "attributes", "type": {"type": "map", "values": "string"}, "default": {}}]}""";

    static final Schema SCHEMA = new Schema.Parser().parse(CUSTOMER);
    static final int ID = 7;

    final FakeTransit transit = new FakeTransit();

    static byte[] frame(int id, byte[] body) {
        return ByteBuffer.allocate(5 + body.length).put((byte) 0).putInt(id).put(body).array();
    }

    static byte[] avro(Schema schema, Object datum) {
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(out, null);
            new GenericDatumWriter<Object>(schema).write(datum, encoder);
            encoder.flush();
            return out.toByteArray();
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    static GenericRecord customer(boolean withEmail) {
        Schema address = SCHEMA.getField("address").schema();
        Schema phone = SCHEMA.getField("phones").schema().getElementType();
        GenericRecord home = new GenericData.Record(address);
        home.put("street", new Utf8("Bahnhofstrasse 1"));
        home.put("city", new Utf8("Zürich"));
        GenericRecord billing = new GenericData.Record(address);
        billing.put("street", new Utf8("Rue de Rivoli 2"));
        billing.put("city", new Utf8("Paris"));
        List<GenericRecord> phones = new ArrayList<>();
        for (String[] p : new String[][] {{"mobile", "+41 44 000 0001"}, {"home", "+41 44 000 0002"}}) {
            GenericRecord r = new GenericData.Record(phone);
            r.put("kind", new Utf8(p[0]));
            r.put("number", new Utf8(p[1]));
            phones.add(r);
        }
        GenericRecord c = new GenericData.Record(SCHEMA);
        c.put("id", 7_000_000_001L);
        c.put("name", new Utf8("Ada Lovelace"));
        c.put("email", withEmail ? new Utf8("ada@example.com") : null);
        c.put("address", home);
        c.put("phones", new GenericData.Array<>(SCHEMA.getField("phones").schema(), phones));
        c.put("photo", ByteBuffer.wrap(new byte[] {(byte) 0xff, 0, 1, 2}));
        c.put("billing", billing);
        c.put("notes", new Utf8("customer since 2001"));
        Map<Utf8, Utf8> attributes = new LinkedHashMap<>();
        attributes.put(new Utf8("tier"), new Utf8("gold"));
        attributes.put(new Utf8("a/b~c"), new Utf8("web"));
        c.put("attributes", attributes);
        return c;
    }

    /** The content's ciphertext text, as the runner writes it (context: the located path when deterministic). */
    String seal(String key, byte[] plaintext, String path, boolean deterministic) {
        return transit.encrypt(key, plaintext, deterministic ? path.getBytes(StandardCharsets.UTF_8) : null, null);
    }

    Utf8 sealed(String text, String path, boolean deterministic) {
        return new Utf8(seal("customers", text.getBytes(StandardCharsets.UTF_8), path, deterministic));
    }

    /** A deep copy of the customer with every PII field (and the attribute values) protected. */
    GenericRecord protect(GenericRecord plain, boolean attributes, boolean deterministic) {
        GenericRecord c = GenericData.get().deepCopy(SCHEMA, plain);
        c.put("name", sealed(c.get("name").toString(), "/name", deterministic));
        if (c.get("email") != null) {
            c.put("email", sealed(c.get("email").toString(), "/email", deterministic));
        }
        GenericRecord address = (GenericRecord) c.get("address");
        address.put("street", sealed(address.get("street").toString(), "/address/street", deterministic));
        GenericRecord billing = (GenericRecord) c.get("billing");
        if (billing != null) {
            billing.put("street", sealed(billing.get("street").toString(), "/billing/street", deterministic));
        }
        @SuppressWarnings("unchecked")
        List<GenericRecord> phones = (List<GenericRecord>) c.get("phones");
        for (int i = 0; i < phones.size(); i++) {
            phones.get(i).put("number", sealed(phones.get(i).get("number").toString(), "/phones/" + i + "/number",
                    deterministic));
        }
        ByteBuffer photo = (ByteBuffer) c.get("photo");
        byte[] bytes = new byte[photo.remaining()];
        photo.duplicate().get(bytes);
        c.put("photo", ByteBuffer.wrap(seal("customers", bytes, "/photo", deterministic)
                .getBytes(StandardCharsets.UTF_8)));
        if (attributes) {
            @SuppressWarnings("unchecked")
            Map<Utf8, Utf8> map = (Map<Utf8, Utf8>) c.get("attributes");
            map.replaceAll((k, v) -> sealed(v.toString(), "/attributes/" + k.toString().replace("~", "~0")
                    .replace("/", "~1"), deterministic));
        }
        return c;
    }

    SchemaFieldsReader reader(SchemaFieldsOptions options) {
        return new SchemaFieldsReader(SchemaFieldsTestSupport.source(ID, new RegisteredSchema(
                RegisteredSchema.Type.AVRO, CUSTOMER)), transit, options);
    }

    @Test
    void opensTaggedFieldsOfNestedRecordsArraysUnionsAndBytesWithOneVaultRequest() {
        GenericRecord plain = customer(true);
        byte[] value = frame(ID, avro(SCHEMA, protect(plain, false, false)));
        SchemaFieldsReader reader = reader(SchemaFieldsOptions.tagged("customers"));
        OpenedRecord opened = reader.open(value);
        assertEquals(plain, opened.value());
        assertEquals(7, opened.fields());
        assertEquals(1, reader.vaultRequests());
        assertEquals(ID, opened.schemaId());
        assertEquals(RegisteredSchema.Type.AVRO, opened.type());
        // Re-encoded: the unprotected record's bytes under the same schema id.
        assertArrayEquals(frame(ID, avro(SCHEMA, plain)), opened.toWireFormat());
        // Strings come back as Utf8, bytes as ByteBuffer, as GenericDatumReader gives them.
        assertTrue(((GenericRecord) opened.value()).get("name") instanceof Utf8);
    }

    @Test
    void aNullOptionalFieldStaysNullAndUntaggedFieldsAreUntouched() {
        GenericRecord plain = customer(false);
        plain.put("photo", null);
        byte[] value = frame(ID, avro(SCHEMA, protect(withPhoto(plain), false, false)));
        GenericRecord protectedOne = protect(withPhoto(plain), false, false);
        protectedOne.put("photo", null);
        value = frame(ID, avro(SCHEMA, protectedOne));
        OpenedRecord opened = reader(SchemaFieldsOptions.tagged("customers")).open(value);
        GenericRecord got = (GenericRecord) opened.value();
        assertNull(got.get("email"));
        assertNull(got.get("photo"));
        assertEquals(plain, got);
        // billing is an Address too: its street is tagged in the type.
        assertEquals(5, opened.fields());
    }

    private static GenericRecord withPhoto(GenericRecord plain) {
        GenericRecord c = GenericData.get().deepCopy(SCHEMA, plain);
        c.put("photo", ByteBuffer.wrap(new byte[] {1}));
        return c;
    }

    @Test
    void fieldPathsSelectMapValuesAndDeterministicUsesTheLocatedPath() {
        GenericRecord plain = customer(true);
        plain.put("billing", null);
        GenericRecord protectedOne = protect(plain, true, true);
        byte[] value = frame(ID, avro(SCHEMA, protectedOne));
        SchemaFieldsReader reader = reader(SchemaFieldsOptions.tagged("customers").withFields("/attributes/*")
                .deterministic(true));
        assertEquals(plain, reader.open(value).value());
        // The same value in the same place: the same ciphertext (convergent, context = path).
        assertEquals(protect(plain, true, true), protectedOne);
        // Without deterministic the contexts are missing: Vault (the fake) refuses.
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class,
                () -> reader(SchemaFieldsOptions.tagged("customers").withFields("/attributes/*")).open(value));
        assertEquals(Reason.VAULT, e.reason());
        assertTrue(e.getMessage().contains("field /name"), e.getMessage());
        // A map key never shows in a message (it is record data).
        assertFalse(e.getMessage().contains("tier"), e.getMessage());
    }

    @Test
    void deterministicContextsAreLocatedPathsWithEscapes() {
        GenericRecord plain = customer(true);
        GenericRecord moved = protect(plain, true, true);
        // Swap two phones' ciphertexts: each opens only at its own path.
        @SuppressWarnings("unchecked")
        List<GenericRecord> phones = (List<GenericRecord>) moved.get("phones");
        Object first = phones.get(0).get("number");
        phones.get(0).put("number", phones.get(1).get("number"));
        phones.get(1).put("number", first);
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class, () -> reader(SchemaFieldsOptions
                .tagged("customers").withFields("/attributes/*").deterministic(true))
                .open(frame(ID, avro(SCHEMA, moved))));
        assertEquals(Reason.VAULT, e.reason());
        assertTrue(e.getMessage().contains("/phones/*/number"), e.getMessage());
    }

    @Test
    void aFieldThatIsNotACiphertextIsRefusedNeverReturned() {
        GenericRecord plain = customer(true);
        GenericRecord half = protect(plain, false, false);
        half.put("name", new Utf8("Ada Lovelace"));
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class,
                () -> reader(SchemaFieldsOptions.tagged("customers")).open(frame(ID, avro(SCHEMA, half))));
        assertEquals(Reason.NOT_CIPHERTEXT, e.reason());
        assertFalse(e.getMessage().contains("Ada"), e.getMessage());
        // Selected by path but never protected: also refused.
        e = assertThrows(SchemaFieldsException.class, () -> reader(SchemaFieldsOptions.tagged("customers")
                .withFields("/notes")).open(frame(ID, avro(SCHEMA, protect(plain, false, false)))));
        assertEquals(Reason.NOT_CIPHERTEXT, e.reason());
    }

    @Test
    void wireFormatAndDecodeErrors() {
        SchemaFieldsReader reader = reader(SchemaFieldsOptions.tagged("customers"));
        byte[] good = frame(ID, avro(SCHEMA, protect(customer(true), false, false)));
        assertEquals(Reason.FORMAT, assertThrows(SchemaFieldsException.class,
                () -> reader.open(new byte[] {0, 0, 0})).reason());
        byte[] magic = good.clone();
        magic[0] = 1;
        assertEquals(Reason.FORMAT, assertThrows(SchemaFieldsException.class, () -> reader.open(magic)).reason());
        assertEquals(Reason.UNKNOWN_SCHEMA, assertThrows(SchemaFieldsException.class,
                () -> reader.open(frame(99, new byte[] {2}))).reason());
        byte[] trailing = java.util.Arrays.copyOf(good, good.length + 1);
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class, () -> reader.open(trailing));
        assertEquals(Reason.DECODE, e.reason());
        assertTrue(e.getMessage().contains("schema id 7"), e.getMessage());
        byte[] truncated = java.util.Arrays.copyOf(good, good.length - 3);
        assertEquals(Reason.DECODE, assertThrows(SchemaFieldsException.class, () -> reader.open(truncated)).reason());
        assertNull(reader.open((byte[]) null));
    }

    @Test
    void aTagOnAFieldThatIsNotStringOrBytesRefusesEveryRecordOfTheSchema() {
        String schema = """
                {"type": "record", "name": "R", "fields": [
                  {"name": "customer", "type": {"type": "record", "name": "C", "fields": [
                    {"name": "age", "type": ["null", "int"], "default": null, "confluent:tags": ["PII"]}]}}]}""";
        SchemaFieldsReader reader = new SchemaFieldsReader(SchemaFieldsTestSupport.source(3,
                new RegisteredSchema(RegisteredSchema.Type.AVRO, schema)), transit, SchemaFieldsOptions.tagged("k"));
        // Even a record whose age is null.
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class, () -> reader.open(frame(3, new byte[] {0})));
        assertEquals(Reason.SCHEMA, e.reason());
        assertEquals("schema id 3: field /customer/age is tagged PII but is a union of null, int; only string and "
                + "bytes fields can be protected", e.getMessage());
        // Another tag selects nothing: the record reads as it is.
        SchemaFieldsReader other = new SchemaFieldsReader(SchemaFieldsTestSupport.source(3,
                new RegisteredSchema(RegisteredSchema.Type.AVRO, schema)), transit, SchemaFieldsOptions.tagged("k", "PHI"));
        assertEquals(0, other.open(frame(3, new byte[] {0})).fields());
        assertEquals(0, other.vaultRequests());
        // A tagged array is not protected as a whole either.
        String array = """
                {"type": "record", "name": "R", "fields": [
                  {"name": "aliases", "type": {"type": "array", "items": "string"}, "confluent:tags": ["PII"]}]}""";
        SchemaFieldsReader arrays = new SchemaFieldsReader(SchemaFieldsTestSupport.source(4,
                new RegisteredSchema(RegisteredSchema.Type.AVRO, array)), transit, SchemaFieldsOptions.tagged("k"));
        assertTrue(assertThrows(SchemaFieldsException.class, () -> arrays.open(frame(4, new byte[] {0})))
                .getMessage().contains("but is an array"));
    }

    @Test
    void referencesAndRecursiveTypes() {
        String address = """
                {"type": "record", "name": "Address", "namespace": "x", "fields": [
                  {"name": "street", "type": "string", "confluent:tags": ["PII"]}]}""";
        String node = """
                {"type": "record", "name": "Node", "namespace": "x", "fields": [
                  {"name": "at", "type": "Address"},
                  {"name": "next", "type": ["null", "Node"], "default": null}]}""";
        SchemaFieldsReader reader = new SchemaFieldsReader(SchemaFieldsTestSupport.source(5,
                new RegisteredSchema(RegisteredSchema.Type.AVRO, node,
                        List.of(new RegisteredSchema.Reference("x.Address", address)))), transit,
                SchemaFieldsOptions.tagged("customers"));
        Schema.Parser parser = new Schema.Parser();
        Schema addressSchema = parser.parse(address);
        Schema nodeSchema = parser.parse(node);
        GenericRecord plain = null;
        GenericRecord sealed = null;
        for (int i = 2; i >= 0; i--) {
            GenericRecord a = new GenericData.Record(addressSchema);
            a.put("street", new Utf8("street " + i));
            GenericRecord s = new GenericData.Record(addressSchema);
            s.put("street", sealed("street " + i, "", false));
            GenericRecord n = new GenericData.Record(nodeSchema);
            n.put("at", a);
            n.put("next", plain);
            GenericRecord m = new GenericData.Record(nodeSchema);
            m.put("at", s);
            m.put("next", sealed);
            plain = n;
            sealed = m;
        }
        OpenedRecord opened = reader.open(frame(5, avro(nodeSchema, sealed)));
        assertEquals(3, opened.fields());
        assertEquals(plain.toString(), opened.value().toString());
    }

    @Test
    void theRecordsKeyHeaderMustNameTheConfiguredKey() {
        byte[] value = frame(ID, avro(SCHEMA, protect(customer(true), false, false)));
        SchemaFieldsReader configured = reader(SchemaFieldsOptions.tagged("customers"));
        assertEquals(Reason.KEY_MISMATCH, assertThrows(SchemaFieldsException.class, () -> configured.open(
                new SchemaFieldsReader.Input(null, value, "other", "encrypt-schema-fields"))).reason());
        assertEquals(Reason.POLICY, assertThrows(SchemaFieldsException.class, () -> configured.open(
                new SchemaFieldsReader.Input(null, value, "customers", "envelope-seal"))).reason());
        // No key configured: the header names it (checked as a transit key name).
        SchemaFieldsReader byHeader = reader(SchemaFieldsOptions.tagged(null));
        assertEquals(customer(true), byHeader.open(new SchemaFieldsReader.Input(null, value, "customers",
                "encrypt-schema-fields")).value());
        assertEquals(Reason.KEY_NAME, assertThrows(SchemaFieldsException.class, () -> byHeader.open(
                new SchemaFieldsReader.Input(null, value, "../sys", null))).reason());
        assertEquals(Reason.CONFIG, assertThrows(SchemaFieldsException.class, () -> byHeader.open(value)).reason());
    }

    @Test
    void aFixedOrRecordKeyContext() {
        GenericRecord plain = customer(false);
        plain.put("photo", null);
        GenericRecord c = GenericData.get().deepCopy(SCHEMA, plain);
        byte[] key = "7000000001".getBytes(StandardCharsets.UTF_8);
        c.put("name", new Utf8(transit.encrypt("customers", "Ada Lovelace".getBytes(StandardCharsets.UTF_8), key, null)));
        GenericRecord address = (GenericRecord) c.get("address");
        address.put("street", new Utf8(transit.encrypt("customers", "Bahnhofstrasse 1".getBytes(StandardCharsets.UTF_8),
                key, null)));
        @SuppressWarnings("unchecked")
        List<GenericRecord> phones = (List<GenericRecord>) c.get("phones");
        for (GenericRecord phone : phones) {
            phone.put("number", new Utf8(transit.encrypt("customers", phone.get("number").toString()
                    .getBytes(StandardCharsets.UTF_8), key, null)));
        }
        GenericRecord billing = (GenericRecord) c.get("billing");
        billing.put("street", new Utf8(transit.encrypt("customers", "Rue de Rivoli 2".getBytes(StandardCharsets.UTF_8),
                key, null)));
        byte[] value = frame(ID, avro(SCHEMA, c));
        SchemaFieldsReader byKey = reader(SchemaFieldsOptions.tagged("customers").withRecordKeyContext());
        assertEquals(plain, byKey.open(new SchemaFieldsReader.Input(key, value, null, null)).value());
        assertEquals(Reason.CONFIG, assertThrows(SchemaFieldsException.class, () -> byKey.open(value)).reason());
        SchemaFieldsReader fixed = reader(SchemaFieldsOptions.tagged("customers").withContext("7000000001"));
        assertEquals(plain, fixed.open(value).value());
    }

    @Test
    void openAllAsksVaultOncePerKeyForABatch() {
        SchemaFieldsReader reader = reader(SchemaFieldsOptions.tagged("customers"));
        List<SchemaFieldsReader.Input> inputs = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            inputs.add(SchemaFieldsReader.Input.of(frame(ID, avro(SCHEMA, protect(customer(i % 2 == 0), false, false)))));
        }
        inputs.add(SchemaFieldsReader.Input.of(null));
        byte[] bad = frame(ID, avro(SCHEMA, protect(customer(true), false, false)));
        bad[0] = 3;
        inputs.add(SchemaFieldsReader.Input.of(bad));
        List<SchemaFieldsReader.Outcome> outcomes = reader.openAll(inputs);
        assertEquals(1, reader.vaultRequests());
        for (int i = 0; i < 5; i++) {
            assertEquals(customer(i % 2 == 0), outcomes.get(i).get().value());
        }
        assertNull(outcomes.get(5).get());
        assertEquals(Reason.FORMAT, outcomes.get(6).error().reason());
    }
}
