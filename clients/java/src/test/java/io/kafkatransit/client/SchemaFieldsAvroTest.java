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
    /** Format 3: each field's associated data by its located path (null: format 2, none). */
    java.util.function.Function<String, byte[]> associatedData = path -> null;

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
        return transit.encrypt(key, plaintext, deterministic ? path.getBytes(StandardCharsets.UTF_8) : null,
                associatedData.apply(path));
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
        // A path to the map selects each of its values, as a path to the values does.
        OpenedRecord whole = reader(SchemaFieldsOptions.tagged("customers").withFields("/attributes")
                .deterministic(true)).open(value);
        assertEquals(plain, whole.value());
        assertEquals(8, whole.fields());
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
                + "bytes fields, and arrays and maps of them, can be protected", e.getMessage());
        // Another tag selects nothing: the record reads as it is.
        SchemaFieldsReader other = new SchemaFieldsReader(SchemaFieldsTestSupport.source(3,
                new RegisteredSchema(RegisteredSchema.Type.AVRO, schema)), transit, SchemaFieldsOptions.tagged("k", "PHI"));
        assertEquals(0, other.open(frame(3, new byte[] {0})).fields());
        assertEquals(0, other.vaultRequests());
        // A tagged record is not protected as a whole, nor an array or a map of anything but
        // strings and bytes (nor a union holding one).
        for (String[] typeAndDescribed : new String[][] {
                {"{\"type\": \"record\", \"name\": \"In\", \"fields\": [{\"name\": \"s\", \"type\": \"string\"}]}",
                    "record In"},
                {"{\"type\": \"array\", \"items\": {\"type\": \"record\", \"name\": \"In\", \"fields\": []}}",
                    "an array of record In"},
                {"{\"type\": \"array\", \"items\": \"int\"}", "an array of int"},
                {"{\"type\": \"array\", \"items\": {\"type\": \"array\", \"items\": \"string\"}}",
                    "an array of an array of string"},
                {"{\"type\": \"map\", \"values\": [\"null\", \"string\", \"long\"]}",
                    "a map of a union of null, string, long"},
                {"[\"null\", {\"type\": \"array\", \"items\": \"int\"}]", "a union of null, an array of int"},
                {"[\"null\", \"string\", {\"type\": \"record\", \"name\": \"In\", \"fields\": []}]",
                    "a union of null, string, record In"},
                {"{\"type\": \"enum\", \"name\": \"E\", \"symbols\": [\"A\"]}", "enum E"},
                {"\"null\"", "null"}}) {
            String tagged = "{\"type\": \"record\", \"name\": \"R\", \"fields\": [{\"name\": \"x\", \"type\": "
                    + typeAndDescribed[0] + ", \"confluent:tags\": [\"PII\"]}]}";
            SchemaFieldsException refused = assertThrows(SchemaFieldsException.class,
                    () -> reader(4, tagged, SchemaFieldsOptions.tagged("k")).open(frame(4, new byte[] {0})));
            assertEquals(Reason.SCHEMA, refused.reason());
            assertEquals("schema id 4: field /x is tagged PII but is " + typeAndDescribed[1] + "; only string and "
                    + "bytes fields, and arrays and maps of them, can be protected", refused.getMessage());
        }
    }

    SchemaFieldsReader reader(int id, String schema, SchemaFieldsOptions options) {
        return new SchemaFieldsReader(SchemaFieldsTestSupport.source(id, new RegisteredSchema(
                RegisteredSchema.Type.AVRO, schema)), transit, options);
    }

    static SchemaFieldsOptions byPaths(String key, String... paths) {
        return new SchemaFieldsOptions(key, List.of(), List.of(paths), false, null, false);
    }

    /** Tagged arrays and maps of strings and bytes, and a nullable array of nullable strings. */
    static final String COLLECTIONS = """
            {"type": "record", "name": "R", "fields": [
              {"name": "tags", "type": {"type": "array", "items": "string"}, "confluent:tags": ["PII"]},
              {"name": "attrs", "type": {"type": "map", "values": "bytes"}, "confluent:tags": ["PII"]},
              {"name": "notes", "type": ["null", {"type": "array", "items": ["null", "string"]}],
               "confluent:tags": ["PII"]},
              {"name": "n", "type": "int"}]}""";
    static final Schema COLLECTIONS_SCHEMA = new Schema.Parser().parse(COLLECTIONS);

    static GenericRecord collections(List<String> tags, Map<String, byte[]> attrs, List<String> notes) {
        GenericRecord r = new GenericData.Record(COLLECTIONS_SCHEMA);
        r.put("tags", new GenericData.Array<>(COLLECTIONS_SCHEMA.getField("tags").schema(),
                tags.stream().map(Utf8::new).toList()));
        Map<Utf8, ByteBuffer> map = new LinkedHashMap<>();
        attrs.forEach((k, v) -> map.put(new Utf8(k), ByteBuffer.wrap(v)));
        r.put("attrs", map);
        if (notes != null) {
            List<Utf8> list = new ArrayList<>();
            notes.forEach(note -> list.add(note == null ? null : new Utf8(note)));
            r.put("notes", new GenericData.Array<>(COLLECTIONS_SCHEMA.getField("notes").schema().getTypes().get(1),
                    list));
        }
        r.put("n", 7);
        return r;
    }

    @Test
    void aTagOnAnArrayOrMapOfStringsOrBytesProtectsEachElementOrValueAtItsLocatedPath() {
        Map<String, byte[]> attrs = new LinkedHashMap<>();
        attrs.put("k/1", new byte[] {(byte) 0xff});
        attrs.put("k2", new byte[0]);
        GenericRecord plain = collections(List.of("a", "b"), attrs, java.util.Arrays.asList("n0", null, "n2"));
        // Protected as the runner does it, deterministically: each element and value under its
        // located path (RFC 6901), the map keys in clear, null elements left null.
        Map<String, byte[]> sealedAttrs = new LinkedHashMap<>();
        sealedAttrs.put("k/1", seal("k", new byte[] {(byte) 0xff}, "/attrs/k~11", true).getBytes(StandardCharsets.UTF_8));
        sealedAttrs.put("k2", seal("k", new byte[0], "/attrs/k2", true).getBytes(StandardCharsets.UTF_8));
        GenericRecord sealed = collections(
                List.of(seal("k", bytes("a"), "/tags/0", true), seal("k", bytes("b"), "/tags/1", true)), sealedAttrs,
                java.util.Arrays.asList(seal("k", bytes("n0"), "/notes/0", true), null,
                        seal("k", bytes("n2"), "/notes/2", true)));
        byte[] value = frame(4, avro(COLLECTIONS_SCHEMA, sealed));
        // The tags, configured paths to the fields, and paths to their elements all select the same.
        for (SchemaFieldsOptions options : List.of(SchemaFieldsOptions.tagged("k"),
                byPaths("k", "/tags", "/attrs", "/notes"), byPaths("k", "/tags/*", "/attrs/*", "/notes/*"))) {
            SchemaFieldsReader reader = reader(4, COLLECTIONS, options.deterministic(true));
            OpenedRecord opened = reader.open(value);
            assertEquals(6, opened.fields(), options.toString());
            assertEquals(plain, opened.value(), options.toString());
            assertEquals(1, reader.vaultRequests());
        }
        // Another element's ciphertext moved in: it opens only at its own path.
        GenericRecord moved = GenericData.get().deepCopy(COLLECTIONS_SCHEMA, sealed);
        @SuppressWarnings("unchecked")
        List<Object> tags = (List<Object>) moved.get("tags");
        tags.set(0, tags.get(1));
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class, () -> reader(4, COLLECTIONS,
                SchemaFieldsOptions.tagged("k").deterministic(true)).open(frame(4, avro(COLLECTIONS_SCHEMA, moved))));
        assertEquals(Reason.VAULT, e.reason());
        assertTrue(e.getMessage().contains("/tags/*"), e.getMessage());
        // An element in clear is refused, never returned.
        GenericRecord clear = GenericData.get().deepCopy(COLLECTIONS_SCHEMA, sealed);
        @SuppressWarnings("unchecked")
        List<Object> notes = (List<Object>) clear.get("notes");
        notes.set(2, new Utf8("n2"));
        assertEquals(Reason.NOT_CIPHERTEXT, assertThrows(SchemaFieldsException.class, () -> reader(4, COLLECTIONS,
                SchemaFieldsOptions.tagged("k").deterministic(true)).open(frame(4, avro(COLLECTIONS_SCHEMA, clear))))
                .reason());
        // Null and empty collections hold nothing to protect.
        SchemaFieldsReader reader = reader(4, COLLECTIONS, SchemaFieldsOptions.tagged("k"));
        GenericRecord empty = collections(List.of(), Map.of(), null);
        OpenedRecord opened = reader.open(frame(4, avro(COLLECTIONS_SCHEMA, empty)));
        assertEquals(0, opened.fields());
        assertEquals(empty, opened.value());
        // `*` selects every field: the int among them too.
        assertEquals("schema id 4: field /n is selected by the path /* but is int; only string and bytes fields, "
                + "and arrays and maps of them, can be protected", assertThrows(SchemaFieldsException.class,
                () -> reader(4, COLLECTIONS, byPaths("k", "/*")).open(frame(4, avro(COLLECTIONS_SCHEMA, empty))))
                .getMessage());
    }

    @Test
    void aUnionMayHoldAStringOrAnArrayOfBytes() {
        String either = """
                {"type": "record", "name": "R", "fields": [{"name": "x", "type":
                  ["null", "string", {"type": "array", "items": "bytes"}], "confluent:tags": ["PII"]}]}""";
        Schema schema = new Schema.Parser().parse(either);
        Schema union = schema.getField("x").schema();
        SchemaFieldsReader reader = reader(4, either, SchemaFieldsOptions.tagged("k").deterministic(true));
        GenericRecord none = new GenericData.Record(schema);
        assertEquals(0, reader.open(frame(4, avro(schema, none))).fields());
        GenericRecord text = new GenericData.Record(schema);
        text.put("x", new Utf8(seal("k", bytes("s"), "/x", true)));
        OpenedRecord opened = reader.open(frame(4, avro(schema, text)));
        assertEquals(new Utf8("s"), ((GenericRecord) opened.value()).get("x"));
        GenericRecord array = new GenericData.Record(schema);
        array.put("x", new GenericData.Array<>(union.getTypes().get(2), List.of(
                ByteBuffer.wrap(seal("k", bytes("a"), "/x/0", true).getBytes(StandardCharsets.UTF_8)),
                ByteBuffer.wrap(seal("k", new byte[0], "/x/1", true).getBytes(StandardCharsets.UTF_8)))));
        opened = reader.open(frame(4, avro(schema, array)));
        assertEquals(2, opened.fields());
        assertEquals(List.of(ByteBuffer.wrap(bytes("a")), ByteBuffer.wrap(new byte[0])),
                ((GenericRecord) opened.value()).get("x"));
    }

    @Test
    void aStringOrBytesWithALogicalTypeIsRefusedForEveryRecordOfTheSchema() {
        String uuid = field("{\"type\": \"string\", \"logicalType\": \"uuid\"}");
        byte[] value = frame(4, new byte[] {0});
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class,
                () -> reader(4, uuid, SchemaFieldsOptions.tagged("k")).open(value));
        assertEquals(Reason.SCHEMA, e.reason());
        assertEquals("schema id 4: field /x is tagged PII but is string (logical type uuid): a ciphertext is not a "
                + "valid uuid, so consumers would fail to read the record; remove the tag or the logical type",
                e.getMessage());
        e = assertThrows(SchemaFieldsException.class, () -> reader(4, uuid, byPaths("k", "/x")).open(value));
        assertEquals(Reason.SCHEMA, e.reason());
        assertEquals("schema id 4: field /x is selected by the path /x but is string (logical type uuid): a "
                + "ciphertext is not a valid uuid, so consumers would fail to read the record; remove the path or the "
                + "logical type", e.getMessage());
        // Not selected: no error.
        assertEquals(0, reader(4, uuid, SchemaFieldsOptions.tagged("k", "PHI")).open(frame(4, new byte[] {0x02, 0x30}))
                .fields());
        for (String[] typeAndWhat : new String[][] {
                {"{\"type\": \"bytes\", \"logicalType\": \"decimal\", \"precision\": 9, \"scale\": 2}",
                    "is bytes (logical type decimal): a ciphertext is not a valid decimal"},
                {"{\"type\": \"string\", \"logicalType\": \"acme-iban\"}",
                    "is string (logical type acme-iban): a ciphertext is not a valid acme-iban"},
                {"[\"null\", {\"type\": \"string\", \"logicalType\": \"uuid\"}]",
                    "is a union of null, string (logical type uuid): a ciphertext is not a valid uuid"},
                {"{\"type\": \"array\", \"items\": {\"type\": \"string\", \"logicalType\": \"uuid\"}}",
                    "is an array of string (logical type uuid): a ciphertext is not a valid uuid"},
                {"[\"null\", {\"type\": \"map\", \"values\": [\"null\", {\"type\": \"bytes\", "
                    + "\"logicalType\": \"decimal\", \"precision\": 4}]}]",
                    "is a union of null, a map of a union of null, bytes (logical type decimal): a ciphertext is not "
                    + "a valid decimal"}}) {
            e = assertThrows(SchemaFieldsException.class,
                    () -> reader(4, field(typeAndWhat[0]), SchemaFieldsOptions.tagged("k")).open(value));
            assertEquals(Reason.SCHEMA, e.reason());
            assertTrue(e.getMessage().contains(typeAndWhat[1]), e.getMessage());
        }
        // Selected by a path through an array.
        String ids = """
                {"type": "record", "name": "R", "fields": [
                  {"name": "ids", "type": {"type": "array", "items": {"type": "string", "logicalType": "uuid"}}}]}""";
        e = assertThrows(SchemaFieldsException.class, () -> reader(4, ids, byPaths("k", "/ids/*")).open(value));
        assertEquals(Reason.SCHEMA, e.reason());
        assertTrue(e.getMessage().startsWith("schema id 4: field /ids/* is selected by the path /ids/* but is string "
                + "(logical type uuid)"), e.getMessage());
        // A logicalType that is not a name is no logical type (as for Avro itself): protected.
        String named = field("{\"type\": \"string\", \"logicalType\": 7}");
        Schema schema = new Schema.Parser().parse(named);
        GenericRecord sealed = new GenericData.Record(schema);
        sealed.put("x", new Utf8(seal("k", bytes("Ann"), "/x", false)));
        OpenedRecord opened = reader(4, named, SchemaFieldsOptions.tagged("k")).open(frame(4, avro(schema, sealed)));
        assertEquals(new Utf8("Ann"), ((GenericRecord) opened.value()).get("x"));
        // Logical types on other types, and on fields not selected, are read as they are.
        String other = """
                {"type": "record", "name": "R", "fields": [
                  {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
                  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                  {"name": "name", "type": "string", "confluent:tags": ["PII"]}]}""";
        Schema otherSchema = new Schema.Parser().parse(other);
        GenericRecord r = new GenericData.Record(otherSchema);
        r.put("id", new Utf8("6f1c3e1a-0000-4000-8000-000000000000"));
        r.put("at", 1_700_000_000_000L);
        r.put("name", new Utf8(seal("k", bytes("Ann"), "/name", false)));
        opened = reader(4, other, SchemaFieldsOptions.tagged("k")).open(frame(4, avro(otherSchema, r)));
        assertEquals(1, opened.fields());
        assertEquals(new Utf8("Ann"), ((GenericRecord) opened.value()).get("name"));
    }

    static String field(String type) {
        return "{\"type\": \"record\", \"name\": \"R\", \"fields\": [{\"name\": \"x\", \"type\": " + type
                + ", \"confluent:tags\": [\"PII\"]}]}";
    }

    static byte[] bytes(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
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
