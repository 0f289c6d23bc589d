package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;

import io.kafkatransit.client.schema.OpenedRecord;
import io.kafkatransit.client.schema.RegisteredSchema;
import io.kafkatransit.client.schema.SchemaFieldsException;
import io.kafkatransit.client.schema.SchemaFieldsException.Reason;
import io.kafkatransit.client.schema.SchemaFieldsOptions;
import io.kafkatransit.client.schema.SchemaFieldsReader;

/** JSON Schema records, protected by hand with {@link FakeTransit} and opened. */
class SchemaFieldsJsonTest {
    static final ObjectMapper JSON = new ObjectMapper();
    static final String SCHEMA = """
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Customer", "type": "object",
             "properties": {
               "id": {"type": "integer"},
               "name": {"type": "string", "confluent:tags": ["PII"]},
               "email": {"oneOf": [{"type": "null"}, {"type": "string"}], "confluent:tags": ["PII"]},
               "address": {"$ref": "#/$defs/Address"},
               "billing": {"$ref": "address.json"},
               "phones": {"type": "array", "items": {"type": "object", "properties": {
                 "kind": {"type": "string"}, "number": {"type": "string", "confluent:tags": ["PII"]}}}},
               "tuple": {"type": "array", "prefixItems": [{"type": "string", "confluent:tags": ["PII"]}, {"type": "integer"}]},
               "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
               "extra": {"type": "object", "patternProperties": {"^x-": {"type": "string", "confluent:tags": ["PII"]}}},
               "notes": {"type": "string"},
               "amount": {"type": "number"}},
             "$defs": {"Address": {"type": "object", "properties": {
               "street": {"type": "string", "confluent:tags": ["PII"]}, "city": {"type": "string"}}}}}""";
    static final String ADDRESS = """
            {"$id": "https://example.com/address.json", "type": "object", "allOf": [{"properties": {
              "street": {"type": ["string", "null"], "confluent:tags": ["PII"]}}}]}""";

    final FakeTransit transit = new FakeTransit();

    static String plain() {
        return """
                {"id": 7000000001, "name": "Ada", "email": null,
                 "address": {"street": "Main Street 1", "city": "Zürich"},
                 "billing": {"street": "Rue 2", "city": "Paris"},
                 "phones": [{"kind": "mobile", "number": "+41 1"}, {"kind": "home", "number": "+41 2"}],
                 "tuple": ["first", 2],
                 "attributes": {"tier": "gold", "a/b": "web"},
                 "extra": {"x-secret": "hidden", "y": "open"},
                 "notes": "x", "amount": 12.50}""";
    }

    String seal(String text, String path, boolean deterministic) {
        return transit.encrypt("customers", text.getBytes(StandardCharsets.UTF_8),
                deterministic ? path.getBytes(StandardCharsets.UTF_8) : null, null);
    }

    JsonNode sealed(boolean attributes, boolean deterministic) throws Exception {
        ObjectNode c = (ObjectNode) JSON.readTree(plain());
        c.put("name", seal("Ada", "/name", deterministic));
        ((ObjectNode) c.get("address")).put("street", seal("Main Street 1", "/address/street", deterministic));
        ((ObjectNode) c.get("billing")).put("street", seal("Rue 2", "/billing/street", deterministic));
        ArrayNode phones = (ArrayNode) c.get("phones");
        for (int i = 0; i < phones.size(); i++) {
            ((ObjectNode) phones.get(i)).put("number", seal(phones.get(i).get("number").asText(),
                    "/phones/" + i + "/number", deterministic));
        }
        ((ArrayNode) c.get("tuple")).set(0, seal("first", "/tuple/0", deterministic));
        ((ObjectNode) c.get("extra")).put("x-secret", seal("hidden", "/extra/x-secret", deterministic));
        if (attributes) {
            ((ObjectNode) c.get("attributes")).put("tier", seal("gold", "/attributes/tier", deterministic));
            ((ObjectNode) c.get("attributes")).put("a/b", seal("web", "/attributes/a~1b", deterministic));
        }
        return c;
    }

    static byte[] frame(int id, byte[] body) {
        return ByteBuffer.allocate(5 + body.length).put((byte) 0).putInt(id).put(body).array();
    }

    SchemaFieldsReader reader(String schema, SchemaFieldsOptions options) {
        return new SchemaFieldsReader(SchemaFieldsTestSupport.source(21, new RegisteredSchema(RegisteredSchema.Type.JSON,
                schema, List.of(new RegisteredSchema.Reference("address.json", ADDRESS)))), transit, options);
    }

    @Test
    void opensTaggedFieldsThroughRefsOneOfAllOfItemsAndPatterns() throws Exception {
        // Numbers as written: 12.50 and 1e3 stay so.
        byte[] value = frame(21, JSON.writeValueAsString(sealed(false, false)).replace("12.5", "12.50")
                .replace("\"notes\"", "\"big\":1e3,\"notes\"").getBytes(StandardCharsets.UTF_8));
        SchemaFieldsReader reader = reader(SCHEMA, SchemaFieldsOptions.tagged("customers"));
        OpenedRecord opened = reader.open(value);
        ObjectNode expected = (ObjectNode) JSON.readTree(plain());
        expected.put("big", 1000.0);
        assertEquals(expected, JSON.readTree(JSON.writeValueAsString(opened.value())));
        assertEquals(7, opened.fields());
        assertEquals(1, reader.vaultRequests());
        // Re-encoded as JSON text: the same JSON; numbers as written (12.50 stays 12.50).
        String text = new String(opened.toWireFormat(), 5, opened.toWireFormat().length - 5, StandardCharsets.UTF_8);
        assertEquals(expected, JSON.readTree(text));
        assertTrue(text.contains("12.50"), text);
    }

    @Test
    void pathsSelectMapValuesAndDeterministicUsesLocatedPaths() throws Exception {
        byte[] value = frame(21, JSON.writeValueAsBytes(sealed(true, true)));
        OpenedRecord opened = reader(SCHEMA, SchemaFieldsOptions.tagged("customers").withFields("/attributes/*")
                .deterministic(true)).open(value);
        assertEquals(JSON.readTree(plain()), JSON.readTree(JSON.writeValueAsString(opened.value())));
        assertEquals(9, opened.fields());
        // A path to the map (an object with no properties, its additionalProperties strings)
        // selects each of its values, as a path to the values does.
        opened = reader(SCHEMA, SchemaFieldsOptions.tagged("customers").withFields("/attributes")
                .deterministic(true)).open(value);
        assertEquals(JSON.readTree(plain()), JSON.readTree(JSON.writeValueAsString(opened.value())));
        assertEquals(9, opened.fields());
    }

    static final String COLLECTIONS = """
            {"type": "object", "properties": {
               "tags": {"type": "array", "items": {"type": "string"}, "confluent:tags": ["PII"]},
               "attrs": {"type": "object", "additionalProperties": {"type": "string"}, "confluent:tags": ["PII"]},
               "notes": {"type": ["array", "null"], "items": {"type": ["string", "null"]}, "confluent:tags": ["PII"]},
               "aliases": {"$ref": "#/$defs/Strings", "confluent:tags": ["PII"]},
               "n": {"type": "integer"}},
             "$defs": {"Strings": {"type": "array", "items": {"$ref": "#/$defs/S"}}, "S": {"type": "string"}}}""";

    SchemaFieldsReader reader(int id, String schema, SchemaFieldsOptions options) {
        String email = "{\"type\": \"string\", \"format\": \"email\"}";
        return new SchemaFieldsReader(SchemaFieldsTestSupport.source(id, new RegisteredSchema(RegisteredSchema.Type.JSON,
                schema, List.of(new RegisteredSchema.Reference("email.json", email)))), transit, options);
    }

    static SchemaFieldsOptions byPaths(String... paths) {
        return new SchemaFieldsOptions("customers", List.of(), List.of(paths), false, null, false);
    }

    static byte[] json(String text) {
        return frame(22, text.getBytes(StandardCharsets.UTF_8));
    }

    @Test
    void aTagOnAnArrayOrMapOfStringsSelectsEachElementOrValueAtItsLocatedPath() throws Exception {
        String plain = """
                {"tags": ["a", "b"], "attrs": {"k/1": "v", "k2": "w"}, "notes": ["n0", null, "n2"], "aliases": ["x"],
                 "n": 1}""";
        // Protected as the runner does it, deterministically: each element and value under its
        // located path (RFC 6901), the member names in clear, null elements left null.
        ObjectNode sealed = (ObjectNode) JSON.readTree(plain);
        ArrayNode tags = (ArrayNode) sealed.get("tags");
        tags.set(0, seal("a", "/tags/0", true));
        tags.set(1, seal("b", "/tags/1", true));
        ((ObjectNode) sealed.get("attrs")).put("k/1", seal("v", "/attrs/k~11", true));
        ((ObjectNode) sealed.get("attrs")).put("k2", seal("w", "/attrs/k2", true));
        ((ArrayNode) sealed.get("notes")).set(0, seal("n0", "/notes/0", true));
        ((ArrayNode) sealed.get("notes")).set(2, seal("n2", "/notes/2", true));
        ((ArrayNode) sealed.get("aliases")).set(0, seal("x", "/aliases/0", true));
        byte[] value = frame(22, JSON.writeValueAsBytes(sealed));
        // The tags, configured paths to the fields, and paths to their elements all select the same.
        for (SchemaFieldsOptions options : List.of(SchemaFieldsOptions.tagged("customers"),
                byPaths("/tags", "/attrs", "/notes", "/aliases"), byPaths("/tags/*", "/attrs/*", "/notes/*", "/aliases/*"))) {
            SchemaFieldsReader reader = reader(22, COLLECTIONS, options.deterministic(true));
            OpenedRecord opened = reader.open(value);
            assertEquals(7, opened.fields(), options.toString());
            assertEquals(JSON.readTree(plain), JSON.readTree(JSON.writeValueAsString(opened.value())), options.toString());
            assertEquals(1, reader.vaultRequests());
        }
        // Another element's ciphertext moved in: it opens only at its own path.
        ObjectNode moved = sealed.deepCopy();
        ((ArrayNode) moved.get("tags")).set(0, moved.get("tags").get(1));
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class, () -> reader(22, COLLECTIONS,
                SchemaFieldsOptions.tagged("customers").deterministic(true)).open(frame(22, JSON.writeValueAsBytes(moved))));
        assertEquals(Reason.VAULT, e.reason());
        assertTrue(e.getMessage().contains("/tags/*"), e.getMessage());
        SchemaFieldsReader reader = reader(22, COLLECTIONS, SchemaFieldsOptions.tagged("customers"));
        // A value in clear is refused, never returned.
        ObjectNode clear = sealed.deepCopy();
        ((ObjectNode) clear.get("attrs")).put("k2", "w");
        assertEquals(Reason.NOT_CIPHERTEXT, assertThrows(SchemaFieldsException.class,
                () -> reader.open(frame(22, JSON.writeValueAsBytes(clear)))).reason());
        // Null, empty or absent: nothing to protect.
        assertEquals(0, reader.open(json("{\"tags\": [], \"attrs\": {}, \"notes\": null}")).fields());
        // Anything but an array (an object) of strings, or null, is refused, never passed on.
        for (String[] recordAndHolds : new String[][] {
                {"{\"tags\": \"a\"}", "field /tags is selected for protection but holds a string, not an array of strings"},
                {"{\"tags\": {\"a\": \"b\"}}",
                    "field /tags is selected for protection but holds an object, not an array of strings"},
                {"{\"attrs\": [\"v\"]}",
                    "field /attrs is selected for protection but holds an array, not an object of strings"},
                {"{\"tags\": [\"a\", 1]}", "field /tags/* is selected for protection but holds a number, not a string"},
                {"{\"attrs\": {\"k\": {\"v\": \"w\"}}}",
                    "field /attrs/* is selected for protection but holds an object, not a string"}}) {
            e = assertThrows(SchemaFieldsException.class, () -> reader.open(json(recordAndHolds[0])));
            assertEquals(Reason.DECODE, e.reason());
            assertTrue(e.getMessage().contains(recordAndHolds[1]), e.getMessage());
        }
    }

    @Test
    void arraysAndMapsOfAnythingButStringsAreRefused() {
        for (String[] schemaAndSays : new String[][] {
                {"{\"type\": \"array\", \"items\": {\"type\": \"integer\"}}",
                    "field /x/* is selected (selected by the path /x) but its schema type is integer"},
                {"{\"type\": \"array\", \"items\": {\"type\": \"object\", \"properties\": {\"s\": {\"type\": \"string\"}}}}",
                    "field /x/* is selected (selected by the path /x) but its schema type is object"},
                {"{\"type\": \"array\", \"items\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}}",
                    "field /x/* is selected (selected by the path /x) but its schema type is array"},
                {"{\"type\": \"array\"}",
                    "field /x is selected (selected by the path /x) but is an array whose schema (#/properties/x) has no "
                    + "`items` schema"},
                {"{\"type\": \"array\", \"prefixItems\": [{\"type\": \"string\"}]}", "has no `items` schema"},
                {"{\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"contains\": {\"type\": \"integer\"}}",
                    "field /x/* is selected (selected by the path /x) but its schema type is [\"integer\", \"string\"]"},
                {"{\"type\": \"object\"}",
                    "field /x is selected (selected by the path /x) but is an object whose schema (#/properties/x) has "
                    + "no `additionalProperties` schema"},
                {"{\"type\": \"object\", \"additionalProperties\": true}", "has no `additionalProperties` schema"},
                {"{\"type\": \"object\", \"additionalProperties\": {\"type\": \"string\"}, "
                    + "\"patternProperties\": {\"^n\": {\"type\": \"number\"}}}",
                    "field /x/* is selected (selected by the path /x) but its schema type is [\"number\", \"string\"]"},
                // An object with properties is a record, not a map.
                {"{\"type\": \"object\", \"properties\": {\"s\": {\"type\": \"string\"}}, "
                    + "\"additionalProperties\": {\"type\": \"string\"}}",
                    "field /x is selected (selected by the path /x) but its schema type is object"},
                {"{\"type\": [\"array\", \"string\"], \"items\": {\"type\": \"string\"}}",
                    "its schema type is [\"array\", \"string\"]"}}) {
            String schema = "{\"type\": \"object\", \"properties\": {\"x\": " + schemaAndSays[0] + "}}";
            // By a path: refused where a record has the field (null or not).
            SchemaFieldsException e = assertThrows(SchemaFieldsException.class,
                    () -> reader(22, schema, byPaths("/x")).open(json("{\"x\": null}")));
            assertEquals(Reason.SCHEMA, e.reason());
            assertTrue(e.getMessage().contains(schemaAndSays[1]), schemaAndSays[0] + ": " + e.getMessage());
            // By a tag: refused for every record of the schema.
            String tagged = "{\"type\": \"object\", \"properties\": {\"x\": " + schemaAndSays[0].substring(0,
                    schemaAndSays[0].length() - 1) + ", \"confluent:tags\": [\"PII\"]}}}";
            e = assertThrows(SchemaFieldsException.class,
                    () -> reader(22, tagged, SchemaFieldsOptions.tagged("customers")).open(json("{}")));
            assertEquals(Reason.SCHEMA, e.reason());
            assertTrue(e.getMessage().contains("only string fields, and arrays and maps of them, can be protected"),
                    e.getMessage());
            assertEquals(0, reader(22, tagged, SchemaFieldsOptions.tagged("customers", "PHI")).open(json("{}"))
                    .fields());
        }
        // Not every element need be described for a path to one of them to select it.
        String tuple = "{\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"array\", "
                + "\"prefixItems\": [{\"type\": \"string\"}]}}}";
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class,
                () -> reader(22, tuple, byPaths("/x/*")).open(json("{\"x\": [\"a\"]}")));
        assertEquals(Reason.NOT_CIPHERTEXT, e.reason());
    }

    @Test
    void stringsACiphertextMayNotSatisfyAreRefused() throws Exception {
        for (String[] keywordsAndKeyword : new String[][] {
                {"\"pattern\": \"^[0-9]{3}-[0-9]{2}-[0-9]{4}$\"", "pattern"},
                {"\"maxLength\": 11", "maxLength"},
                {"\"format\": \"email\"", "format"},
                {"\"enum\": [\"a\", \"b\"]", "enum"},
                {"\"const\": \"a\"", "const"},
                {"\"contentEncoding\": \"base64\"", "contentEncoding"},
                {"\"contentMediaType\": \"application/json\"", "contentMediaType"}}) {
            String keyword = keywordsAndKeyword[1];
            String schema = "{\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"string\", "
                    + keywordsAndKeyword[0] + ", \"confluent:tags\": [\"PII\"]}}}";
            SchemaFieldsException e = assertThrows(SchemaFieldsException.class,
                    () -> reader(22, schema, SchemaFieldsOptions.tagged("customers")).open(json("{}")));
            assertEquals(Reason.SCHEMA, e.reason());
            assertEquals("schema id 22: field (a subschema tagged PII) is selected (tagged PII) but its schema has `"
                    + keyword + "` (#/properties/x): a ciphertext may not satisfy it, so consumers that validate "
                    + "records would refuse the record; remove the tag or `" + keyword + "`", e.getMessage());
            e = assertThrows(SchemaFieldsException.class,
                    () -> reader(22, schema, byPaths("/x")).open(json("{\"x\": \"a\"}")));
            assertEquals(Reason.SCHEMA, e.reason());
            assertTrue(e.getMessage().contains("field /x is selected (selected by the path /x) but its schema has `"
                    + keyword + "` (#/properties/x)"), e.getMessage());
            assertTrue(e.getMessage().endsWith("remove the path or `" + keyword + "`"), e.getMessage());
            // Not selected: no error.
            assertEquals(0, reader(22, schema, SchemaFieldsOptions.tagged("customers", "PHI"))
                    .open(json("{\"x\": \"a\"}")).fields());
        }
        // Wherever the keyword is among the schemas of the field: a $ref, a branch, the
        // elements of a tagged array or the values of a tagged map, another document.
        for (String[] fieldAndWhere : new String[][] {
                {"{\"$ref\": \"#/$defs/Email\", \"confluent:tags\": [\"PII\"]}", "#/$defs/Email"},
                {"{\"oneOf\": [{\"type\": \"null\"}, {\"$ref\": \"#/$defs/Email\"}], \"confluent:tags\": [\"PII\"]}",
                    "#/$defs/Email"},
                {"{\"allOf\": [{\"type\": \"string\"}, {\"maxLength\": 3}], \"confluent:tags\": [\"PII\"]}",
                    "#/properties/x/allOf/1"},
                {"{\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/Email\"}, \"confluent:tags\": [\"PII\"]}",
                    "#/$defs/Email"},
                {"{\"type\": \"object\", \"additionalProperties\": {\"$ref\": \"#/$defs/Email\"}, "
                    + "\"confluent:tags\": [\"PII\"]}", "#/$defs/Email"},
                {"{\"$ref\": \"email.json\", \"confluent:tags\": [\"PII\"]}", "email.json#"}}) {
            String schema = "{\"type\": \"object\", \"properties\": {\"x\": " + fieldAndWhere[0] + "}, "
                    + "\"$defs\": {\"Email\": {\"type\": \"string\", \"format\": \"email\"}}}";
            SchemaFieldsException e = assertThrows(SchemaFieldsException.class,
                    () -> reader(22, schema, SchemaFieldsOptions.tagged("customers")).open(json("{}")));
            assertEquals(Reason.SCHEMA, e.reason());
            assertTrue(e.getMessage().contains("` (" + fieldAndWhere[1] + "): a ciphertext may not satisfy it"),
                    e.getMessage());
        }
        // A keyword of a branch that allows no string does not matter, and minLength may stay:
        // a ciphertext is longer than its plaintext.
        for (String field : List.of(
                "{\"oneOf\": [{\"type\": \"null\", \"enum\": [null]}, {\"type\": \"string\"}], \"confluent:tags\": [\"PII\"]}",
                "{\"type\": \"string\", \"minLength\": 1, \"confluent:tags\": [\"PII\"]}")) {
            String schema = "{\"type\": \"object\", \"properties\": {\"x\": " + field + "}}";
            OpenedRecord opened = reader(22, schema, SchemaFieldsOptions.tagged("customers"))
                    .open(json("{\"x\": \"" + seal("a", "/x", false) + "\"}"));
            assertEquals(1, opened.fields());
            assertEquals(JSON.readTree("{\"x\": \"a\"}"), JSON.readTree(JSON.writeValueAsString(opened.value())));
        }
    }

    @Test
    void errors() throws Exception {
        SchemaFieldsReader reader = reader(SCHEMA, SchemaFieldsOptions.tagged("customers"));
        ObjectNode number = (ObjectNode) sealed(false, false);
        number.put("name", 5);
        assertEquals(Reason.DECODE, assertThrows(SchemaFieldsException.class,
                () -> reader.open(frame(21, JSON.writeValueAsBytes(number)))).reason());
        ObjectNode clear = (ObjectNode) sealed(false, false);
        clear.put("name", "Ada");
        assertEquals(Reason.NOT_CIPHERTEXT, assertThrows(SchemaFieldsException.class,
                () -> reader.open(frame(21, JSON.writeValueAsBytes(clear)))).reason());
        assertEquals(Reason.DECODE, assertThrows(SchemaFieldsException.class,
                () -> reader.open(frame(21, "{\"name\": \"a\", \"name\": \"b\"}".getBytes(StandardCharsets.UTF_8))))
                .reason());
        assertEquals(Reason.DECODE, assertThrows(SchemaFieldsException.class,
                () -> reader.open(frame(21, "{} {}".getBytes(StandardCharsets.UTF_8)))).reason());
        String tagsInteger = SCHEMA.replace("\"id\": {\"type\": \"integer\"}",
                "\"id\": {\"type\": \"integer\", \"confluent:tags\": [\"PII\"]}");
        SchemaFieldsException e = assertThrows(SchemaFieldsException.class, () -> reader(tagsInteger,
                SchemaFieldsOptions.tagged("customers")).open(frame(21, "{}".getBytes(StandardCharsets.UTF_8))));
        assertEquals(Reason.SCHEMA, e.reason());
        assertTrue(e.getMessage().contains("only string fields, and arrays and maps of them, can be protected"), e.getMessage());
        // Path onto a number.
        assertEquals(Reason.SCHEMA, assertThrows(SchemaFieldsException.class, () -> reader(SCHEMA,
                SchemaFieldsOptions.tagged("customers").withFields("/amount")).open(value())).reason());
    }

    byte[] value() throws Exception {
        return frame(21, JSON.writeValueAsBytes(sealed(false, false)));
    }
}
