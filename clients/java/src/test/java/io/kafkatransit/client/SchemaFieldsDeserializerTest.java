package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.errors.RecordDeserializationException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import io.kafkatransit.client.schema.KafkaTransitSchemaFieldsDeserializer;
import io.kafkatransit.client.schema.RegisteredSchema;
import io.kafkatransit.client.schema.SchemaFieldsConfig;
import io.kafkatransit.client.schema.SchemaFieldsException;
import io.kafkatransit.client.schema.SchemaFieldsException.Reason;
import io.kafkatransit.client.schema.SchemaRegistry;

/**
 * The deserializer configured by consumer properties alone, against an in-process Schema
 * Registry (Confluent's API, with references and basic auth) and an in-process Vault transit
 * (its HTTP API over {@link FakeTransit}).
 */
class SchemaFieldsDeserializerTest {
    static final ObjectMapper JSON = new ObjectMapper();
    final FakeTransit transit = new FakeTransit();
    final AtomicInteger registryRequests = new AtomicInteger();
    final AtomicInteger vaultRequests = new AtomicInteger();
    final List<String> authorizations = new ArrayList<>();
    HttpServer server;
    String base;

    @BeforeEach
    void start() throws IOException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/registry/", this::registry);
        server.createContext("/v1/transit/decrypt/", this::vault);
        server.start();
        base = "http://127.0.0.1:" + server.getAddress().getPort();
    }

    @AfterEach
    void stop() {
        server.stop(0);
    }

    private static void answer(HttpExchange exchange, int status, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.sendResponseHeaders(status, bytes.length);
        exchange.getResponseBody().write(bytes);
        exchange.close();
    }

    private void registry(HttpExchange exchange) throws IOException {
        registryRequests.incrementAndGet();
        authorizations.add(exchange.getRequestHeaders().getFirst("Authorization"));
        String path = exchange.getRequestURI().getRawPath().substring("/registry".length());
        ObjectNode out = JSON.createObjectNode();
        switch (path) {
            case "/schemas/ids/1" -> {
                out.put("schema", SchemaFieldsAvroTest.CUSTOMER);
            }
            case "/schemas/ids/2" -> {
                out.put("schema", "{\"type\": \"record\", \"name\": \"W\", \"fields\": [{\"name\": \"a\", \"type\": \"x.A\"}]}");
                out.putArray("references").addObject().put("name", "x.A").put("subject", "x/a").put("version", 3);
            }
            case "/subjects/x%2Fa/versions/3" -> {
                out.put("schema", "{\"type\": \"record\", \"name\": \"A\", \"namespace\": \"x\", \"fields\": "
                        + "[{\"name\": \"b\", \"type\": \"x.B\"}, {\"name\": \"s\", \"type\": \"string\", "
                        + "\"confluent:tags\": [\"PII\"]}]}");
                out.putArray("references").addObject().put("name", "x.B").put("subject", "b").put("version", 1);
            }
            case "/subjects/b/versions/1" -> out.put("schema",
                    "{\"type\": \"record\", \"name\": \"B\", \"namespace\": \"x\", \"fields\": [{\"name\": \"n\", \"type\": \"int\"}]}");
            case "/schemas/ids/3" -> {
                out.put("schemaType", "JSON");
                out.put("schema", "{\"type\": \"object\", \"properties\": {\"s\": {\"type\": \"string\", "
                        + "\"confluent:tags\": [\"PII\"]}}}");
            }
            case "/schemas/ids/500" -> {
                answer(exchange, 500, "{}");
                return;
            }
            default -> {
                answer(exchange, 404, "{\"error_code\": 40403, \"message\": \"Schema not found\"}");
                return;
            }
        }
        answer(exchange, 200, out.toString());
    }

    /** transit/decrypt with batch_input, answered as Vault does (per-item errors). */
    private void vault(HttpExchange exchange) throws IOException {
        vaultRequests.incrementAndGet();
        if (!"root".equals(exchange.getRequestHeaders().getFirst("X-Vault-Token"))) {
            answer(exchange, 403, "{\"errors\": [\"permission denied\"]}");
            return;
        }
        String key = exchange.getRequestURI().getPath().substring("/v1/transit/decrypt/".length());
        JsonNode request = JSON.readTree(exchange.getRequestBody());
        List<TransitDecrypter.Item> items = new ArrayList<>();
        for (JsonNode item : request.get("batch_input")) {
            // FakeTransit authenticates the associated data as Vault does: a binding other than
            // the writer's fails as "message authentication failed".
            items.add(new TransitDecrypter.Item(item.get("ciphertext").asText(),
                    item.has("context") ? Base64.getDecoder().decode(item.get("context").asText()) : null,
                    item.has("associated_data") ? Base64.getDecoder().decode(item.get("associated_data").asText())
                            : null));
        }
        ObjectNode out = JSON.createObjectNode();
        ArrayNode results = out.putObject("data").putArray("batch_results");
        for (Decryption d : transit.decryptItems(key, items)) {
            if (d instanceof Decryption.Plaintext p) {
                results.addObject().put("plaintext", Base64.getEncoder().encodeToString(p.bytes()));
            } else {
                results.addObject().put("error", ((Decryption.Failed) d).message());
            }
        }
        answer(exchange, 200, out.toString());
    }

    Map<String, Object> properties(Path dir) throws IOException {
        Path token = dir.resolve("token");
        Files.writeString(token, "root\n");
        Path password = dir.resolve("password");
        Files.writeString(password, "s3cret\n");
        Map<String, Object> p = new HashMap<>();
        p.put("kafka.transit.vault.address", base);
        p.put("kafka.transit.vault.token.file", token.toString());
        p.put("kafka.transit.vault.key", "customers");
        p.put("kafka.transit.schema.registry.url", base + "/registry/");
        p.put("kafka.transit.schema.registry.username", "reader");
        p.put("kafka.transit.schema.registry.password.file", password.toString());
        return p;
    }

    @Test
    void configuredByPropertiesItOpensRecordsAndCachesSchemas(@TempDir Path dir) throws IOException {
        var plain = SchemaFieldsAvroTest.customer(true);
        var helper = new SchemaFieldsAvroTest();
        try (var deserializer = new KafkaTransitSchemaFieldsDeserializer()) {
            deserializer.configure(properties(dir), false);
            RecordHeaders headers = new RecordHeaders();
            headers.add("kafka-transit.policy", "encrypt-schema-fields".getBytes(StandardCharsets.UTF_8));
            headers.add("kafka-transit.key", "customers".getBytes(StandardCharsets.UTF_8));
            for (int i = 0; i < 3; i++) {
                byte[] value = SchemaFieldsAvroTest.frame(1, SchemaFieldsAvroTest.avro(SchemaFieldsAvroTest.SCHEMA,
                        protect(helper, plain)));
                Object got = deserializer.deserialize("customers.protected", headers, value);
                assertInstanceOf(GenericRecord.class, got);
                assertEquals(plain, got);
            }
            assertEquals(1, registryRequests.get());
            assertEquals(3, vaultRequests.get());
            assertEquals(SchemaRegistry.basic("reader", "s3cret"), authorizations.get(0));
            assertNull(deserializer.deserialize("customers.protected", headers, (byte[]) null));
            SerializationException e = assertThrows(SerializationException.class,
                    () -> deserializer.deserialize("customers.protected", headers, new byte[] {0, 0, 0, 0, 9, 1}));
            assertEquals(Reason.UNKNOWN_SCHEMA, ((SchemaFieldsException) e.getCause()).reason());
            assertTrue(e.getMessage().contains("customers.protected"), e.getMessage());
            // An unknown id is remembered: no second request.
            assertThrows(SerializationException.class,
                    () -> deserializer.deserialize("customers.protected", headers, new byte[] {0, 0, 0, 0, 9, 1}));
            assertEquals(2, registryRequests.get());
            e = assertThrows(SerializationException.class,
                    () -> deserializer.deserialize("t", headers, new byte[] {0, 0, 0, 1, (byte) 0xf4, 1}));
            assertEquals(Reason.REGISTRY, ((SchemaFieldsException) e.getCause()).reason());
        }
    }

    /** The helper's protection of a fresh copy of {@code plain} (random nonces: a new ciphertext each time). */
    private GenericRecord protect(SchemaFieldsAvroTest helper, GenericRecord plain) {
        try {
            var field = SchemaFieldsAvroTest.class.getDeclaredField("transit");
            field.setAccessible(true);
            field.set(helper, transit);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(e);
        }
        return helper.protect(plain, false, false);
    }

    @Test
    void referencesAreFetchedDepthFirstAndParsedInOrder(@TempDir Path dir) throws IOException {
        var registry = SchemaFieldsConfig.from(properties(dir)).registry();
        RegisteredSchema schema = registry.schema(2);
        assertEquals(List.of("x.B", "x.A"), schema.references().stream().map(RegisteredSchema.Reference::name).toList());
        try (var deserializer = new KafkaTransitSchemaFieldsDeserializer()) {
            deserializer.configure(properties(dir), false);
            // W{a: A{b: B{n: 5}, s: sealed}}
            String sealed = transit.encrypt("customers", "hi".getBytes(StandardCharsets.UTF_8), null, null);
            byte[] s = sealed.getBytes(StandardCharsets.UTF_8);
            byte[] body = new byte[1 + 1 + s.length];
            body[0] = 10; // zigzag 5
            body[1] = (byte) (s.length * 2);
            System.arraycopy(s, 0, body, 2, s.length);
            Object got = deserializer.deserialize("t", null, SchemaFieldsAvroTest.frame(2, body));
            assertEquals("{\"a\": {\"b\": {\"n\": 5}, \"s\": \"hi\"}}", got.toString());
        }
    }

    @Test
    void readAllAsksVaultOnceForAPollAndNamesTheOffsetOfABadRecord(@TempDir Path dir) throws IOException {
        try (var deserializer = new KafkaTransitSchemaFieldsDeserializer()) {
            deserializer.configure(properties(dir), false);
            List<ConsumerRecord<byte[], byte[]>> poll = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                String sealed = transit.encrypt("customers", ("v" + i).getBytes(StandardCharsets.UTF_8), null, null);
                poll.add(new ConsumerRecord<>("t", 0, i, null,
                        SchemaFieldsAvroTest.frame(3, ("{\"s\": \"" + sealed + "\"}").getBytes(StandardCharsets.UTF_8))));
            }
            poll.add(new ConsumerRecord<>("t", 0, 4, null, null));
            var read = deserializer.readAll(poll);
            assertEquals(1, vaultRequests.get());
            for (int i = 0; i < 4; i++) {
                assertEquals("v" + i, ((JsonNode) read.get(i).value()).get("s").asText());
            }
            assertNull(read.get(4).value());
            // Sealed under another key: Vault refuses that item only.
            String other = transit.encrypt("other", "v5".getBytes(StandardCharsets.UTF_8), null, null);
            poll.add(new ConsumerRecord<>("t", 0, 5, null, SchemaFieldsAvroTest.frame(3,
                    ("{\"s\": \"" + other + "\"}").getBytes(StandardCharsets.UTF_8))));
            RecordDeserializationException e = assertThrows(RecordDeserializationException.class,
                    () -> deserializer.readAll(poll));
            assertEquals(5, e.offset());
            assertEquals(Reason.VAULT, ((SchemaFieldsException) e.getCause()).reason());
        }
    }

    @Test
    void format3RecordsWithTheKeyDeserializerConfiguredByTheSameProperties(@TempDir Path dir) throws IOException {
        Map<String, Object> p = properties(dir);
        p.put("kafka.transit.require.binding", "stream,key");
        p.put("kafka.transit.record.keys.key", "customer-ids");
        p.put(KafkaTransitKeyDeserializer.INNER_KEY_DESERIALIZER, StringDeserializer.class.getName());
        String topic = "customers.protected";
        byte[] sinkKey = transit.encrypt("customer-ids", "customer-42".getBytes(StandardCharsets.UTF_8),
                topic.getBytes(StandardCharsets.UTF_8), null).getBytes(StandardCharsets.US_ASCII);
        var plain = SchemaFieldsAvroTest.customer(true);
        var helper = new SchemaFieldsAvroTest();
        helper.associatedData = path -> SchemaFieldsFormat3Test.expectedBinding(0x43, topic, sinkKey, path);
        byte[] value = SchemaFieldsAvroTest.frame(1, SchemaFieldsAvroTest.avro(SchemaFieldsAvroTest.SCHEMA,
                protect(helper, plain)));
        try (var keys = new KafkaTransitKeyDeserializer<String>();
             var values = new KafkaTransitSchemaFieldsDeserializer()) {
            keys.configure(p, true);
            values.configure(p, false);
            RecordHeaders headers = new RecordHeaders();
            headers.add("kafka-transit.policy", "encrypt-schema-fields".getBytes(StandardCharsets.UTF_8));
            headers.add("kafka-transit.key", "customers".getBytes(StandardCharsets.UTF_8));
            headers.add(Format3.PROTECTION_HEADER, Format3.headerValue(0x43));
            assertEquals("customer-42", keys.deserialize(topic, headers, sinkKey));
            assertEquals(plain, values.deserialize(topic, headers, value));
            assertEquals(2, vaultRequests.get(), "one for the key, one for the fields");
            // Read from another topic (the key too would not decrypt there): refused.
            RecordHeaders moved = new RecordHeaders(headers.toArray());
            // The key deserializer refuses the key (its context is the stream) but hands it over.
            assertThrows(SerializationException.class, () -> keys.deserialize("customers.copy", moved, sinkKey));
            SerializationException e = assertThrows(SerializationException.class,
                    () -> values.deserialize("customers.copy", moved, value));
            assertEquals(Reason.AUTHENTICATION, ((SchemaFieldsException) e.getCause()).reason());
            // A format 2 record: unbound.
            e = assertThrows(SerializationException.class, () -> values.deserialize(topic, new RecordHeaders(),
                    SchemaFieldsAvroTest.frame(1, SchemaFieldsAvroTest.avro(SchemaFieldsAvroTest.SCHEMA,
                            protect(new SchemaFieldsAvroTest(), plain)))));
            assertEquals(Reason.UNBOUND, ((SchemaFieldsException) e.getCause()).reason());
        }
    }

    @Test
    void configurationErrors(@TempDir Path dir) throws IOException {
        Map<String, Object> p = properties(dir);
        p.remove("kafka.transit.schema.registry.url");
        assertThrows(ConfigException.class, () -> SchemaFieldsConfig.from(p));
        Map<String, Object> q = properties(dir);
        q.put("kafka.transit.schema.fields", "ssn");
        assertTrue(assertThrows(ConfigException.class, () -> SchemaFieldsConfig.from(q)).getMessage()
                .contains("must start with"));
        Map<String, Object> r = properties(dir);
        r.put("kafka.transit.schema.deterministic", "true");
        r.put("kafka.transit.schema.context", "x");
        assertThrows(ConfigException.class, () -> SchemaFieldsConfig.from(r));
        Map<String, Object> s = properties(dir);
        s.put("kafka.transit.schema.tags", "PII, PHI");
        s.put("kafka.transit.schema.fields", List.of("/a/*/b", "/c"));
        s.put("kafka.transit.schema.registry.password", "inline");
        SchemaFieldsConfig config = SchemaFieldsConfig.from(s);
        assertEquals(List.of("PII", "PHI"), config.options().tags());
        assertEquals(List.of("/a/*/b", "/c"), config.options().fields());
        assertTrue(!config.toString().contains("inline"), config.toString());
        assertEquals(RecordOptions.DEFAULT, config.options().records());
        Map<String, Object> t = properties(dir);
        t.put("kafka.transit.stream", "customers");
        t.put("kafka.transit.require.binding", "stream");
        t.put("kafka.transit.record.keys.key", "ids");
        assertEquals(new RecordOptions("customers", java.util.Set.of("stream"), "ids", Format3.DEFAULT_MAX_PLAINTEXT),
                SchemaFieldsConfig.from(t).options().records());
        assertTrue(!SchemaFieldsConfig.from(t).options().keepHmacKeys());
        t.put("kafka.transit.keep.hmac.keys", "true");
        assertTrue(SchemaFieldsConfig.from(t).options().keepHmacKeys());
        t.put("kafka.transit.keep.hmac.keys", "yes");
        assertThrows(ConfigException.class, () -> SchemaFieldsConfig.from(t));
        t.remove("kafka.transit.keep.hmac.keys");
        t.put("kafka.transit.schema.deterministic", "true");
        assertTrue(assertThrows(ConfigException.class, () -> SchemaFieldsConfig.from(t)).getMessage()
                .contains("never bound"));
        t.put("kafka.transit.require.binding", "topic");
        assertThrows(ConfigException.class, () -> SchemaFieldsConfig.from(t));
    }
}
