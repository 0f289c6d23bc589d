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
        assertTrue(e.getMessage().contains("only string fields can be protected"), e.getMessage());
        // Path onto a number.
        assertEquals(Reason.SCHEMA, assertThrows(SchemaFieldsException.class, () -> reader(SCHEMA,
                SchemaFieldsOptions.tagged("customers").withFields("/amount")).open(value())).reason());
    }

    byte[] value() throws Exception {
        return frame(21, JSON.writeValueAsBytes(sealed(false, false)));
    }
}
