package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BiFunction;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.protobuf.CodedOutputStream;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.util.Utf8;
import org.junit.jupiter.api.Test;

import io.kafkatransit.client.schema.OpenedRecord;
import io.kafkatransit.client.schema.RegisteredSchema;
import io.kafkatransit.client.schema.SchemaFieldsOptions;
import io.kafkatransit.client.schema.SchemaFieldsReader;

/**
 * The same customer in Avro, JSON Schema and Protobuf, its name, nickname, tags (an array of
 * strings) and attributes (a map of strings) tagged PII: the three readers open the same
 * fields at the same located paths, whether selected by the tags, by paths to the fields, or
 * by paths to the elements and values (as the runner's three walkers select them).
 */
class SchemaFieldsFormatsTest {
    static final String AVRO = """
            {"type": "record", "name": "Customer", "fields": [
              {"name": "name", "type": "string", "confluent:tags": ["PII"]},
              {"name": "nick", "type": ["null", "string"], "confluent:tags": ["PII"]},
              {"name": "tags", "type": {"type": "array", "items": "string"}, "confluent:tags": ["PII"]},
              {"name": "attrs", "type": {"type": "map", "values": "string"}, "confluent:tags": ["PII"]},
              {"name": "age", "type": "int"}]}""";
    static final String JSON_SCHEMA = """
            {"type": "object", "properties": {
              "name": {"type": "string", "confluent:tags": ["PII"]},
              "nick": {"type": ["string", "null"], "confluent:tags": ["PII"]},
              "tags": {"type": "array", "items": {"type": "string"}, "confluent:tags": ["PII"]},
              "attrs": {"type": "object", "additionalProperties": {"type": "string"}, "confluent:tags": ["PII"]},
              "age": {"type": "integer"}}}""";
    static final String PROTO = """
            syntax = "proto3";
            import "confluent/meta.proto";
            message Customer {
              string name = 1 [(confluent.field_meta).tags = "PII"];
              optional string nick = 2 [(confluent.field_meta).tags = "PII"];
              repeated string tags = 3 [(confluent.field_meta).tags = "PII"];
              map<string, string> attrs = 4 [(confluent.field_meta).tags = "PII"];
              int32 age = 5;
            }""";
    static final ObjectMapper JSON = new ObjectMapper();

    final FakeTransit transit = new FakeTransit();

    /** The customer's fields (name, nick, tags, attrs) with each located path's content given by {@code content}. */
    record Customer(String name, String nick, List<String> tags, Map<String, String> attrs) {
        static Customer of(BiFunction<String, String, String> content) {
            Map<String, String> attrs = new LinkedHashMap<>();
            attrs.put("k", content.apply("/attrs/k", "v"));
            return new Customer(content.apply("/name", "Ann"), content.apply("/nick", "Nn"),
                    List.of(content.apply("/tags/0", "a"), content.apply("/tags/1", "b")), attrs);
        }

        byte[] avro() {
            Schema schema = new Schema.Parser().parse(AVRO);
            GenericRecord r = new GenericData.Record(schema);
            r.put("name", new Utf8(name));
            r.put("nick", new Utf8(nick));
            r.put("tags", new GenericData.Array<>(schema.getField("tags").schema(), tags.stream().map(Utf8::new).toList()));
            Map<Utf8, Utf8> map = new LinkedHashMap<>();
            attrs.forEach((k, v) -> map.put(new Utf8(k), new Utf8(v)));
            r.put("attrs", map);
            r.put("age", 42);
            return SchemaFieldsAvroTest.avro(schema, r);
        }

        byte[] json() {
            Map<String, Object> c = new LinkedHashMap<>();
            c.put("name", name);
            c.put("nick", nick);
            c.put("tags", tags);
            c.put("attrs", attrs);
            c.put("age", 42);
            try {
                return JSON.writeValueAsBytes(c);
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }

        byte[] protobuf() {
            try {
                ByteArrayOutputStream bytes = new ByteArrayOutputStream();
                CodedOutputStream out = CodedOutputStream.newInstance(bytes);
                out.writeString(1, name);
                out.writeString(2, nick);
                for (String tag : tags) {
                    out.writeString(3, tag);
                }
                for (Map.Entry<String, String> entry : attrs.entrySet()) {
                    ByteArrayOutputStream entryBytes = new ByteArrayOutputStream();
                    CodedOutputStream e = CodedOutputStream.newInstance(entryBytes);
                    e.writeString(1, entry.getKey());
                    e.writeString(2, entry.getValue());
                    e.flush();
                    out.writeByteArray(4, entryBytes.toByteArray());
                }
                out.writeInt32(5, 42);
                out.flush();
                return bytes.toByteArray();
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }
    }

    static byte[] frame(RegisteredSchema.Type type, byte[] body) {
        byte[] indexes = type == RegisteredSchema.Type.PROTOBUF ? new byte[] {0} : new byte[0];
        return ByteBuffer.allocate(5 + indexes.length + body.length).put((byte) 0).putInt(30).put(indexes).put(body)
                .array();
    }

    @Test
    void theThreeReadersOpenTheSameFields() throws IOException {
        Customer plain = Customer.of((path, text) -> text);
        // Deterministic: each content sealed under its located path, so each opens only there.
        Customer sealed = Customer.of((path, text) -> transit.encrypt("customers",
                text.getBytes(StandardCharsets.UTF_8), path.getBytes(StandardCharsets.UTF_8), null));
        List<SchemaFieldsOptions> selections = List.of(SchemaFieldsOptions.tagged("customers"),
                new SchemaFieldsOptions("customers", List.of(), List.of("/name", "/nick", "/tags", "/attrs"), false,
                        null, false),
                new SchemaFieldsOptions("customers", List.of(), List.of("/name", "/nick", "/tags/*", "/attrs/*"), false,
                        null, false));
        for (RegisteredSchema.Type type : RegisteredSchema.Type.values()) {
            String text = switch (type) {
                case AVRO -> AVRO;
                case JSON -> JSON_SCHEMA;
                case PROTOBUF -> PROTO;
            };
            byte[] sealedBody = switch (type) {
                case AVRO -> sealed.avro();
                case JSON -> sealed.json();
                case PROTOBUF -> sealed.protobuf();
            };
            byte[] plainBody = switch (type) {
                case AVRO -> plain.avro();
                case JSON -> plain.json();
                case PROTOBUF -> plain.protobuf();
            };
            for (SchemaFieldsOptions options : selections) {
                SchemaFieldsReader reader = new SchemaFieldsReader(SchemaFieldsTestSupport.source(30,
                        new RegisteredSchema(type, text)), transit, options.deterministic(true));
                OpenedRecord opened = reader.open(frame(type, sealedBody));
                assertEquals(5, opened.fields(), type + " " + options);
                if (type == RegisteredSchema.Type.JSON) {
                    byte[] wire = opened.toWireFormat();
                    assertEquals(JSON.readTree(plainBody), JSON.readTree(new String(wire, 5, wire.length - 5,
                            StandardCharsets.UTF_8)), type + " " + options);
                } else {
                    assertArrayEquals(frame(type, plainBody), opened.toWireFormat(), type + " " + options);
                }
            }
        }
    }
}
