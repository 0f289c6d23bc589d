package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import io.kafkatransit.client.schema.KafkaTransitSchemaFieldsDeserializer;
import io.kafkatransit.client.schema.SchemaFieldsException;
import io.kafkatransit.client.schema.SchemaFieldsReader;

/**
 * Opens a file of schema'd records that {@code encrypt-schema-fields} protected (JSON lines
 * {@code {"key": base64|null, "value": base64}}, optionally {@code "topic": "name"} and
 * {@code "headers"}: {@code [[name, base64|null], ...]} in order, as .ci/e2e/schema-fields.sh
 * writes them and the Go and Python readers take them, or {@code {"name": "text"}}) with the
 * deserializer configured by properties alone, against a real Schema Registry and Vault/OpenBao,
 * and writes each opened record re-encoded in Confluent's wire format under the same schema id
 * ({@code {"key": ..., "value": base64}}), or why it could not be opened
 * ({@code {"key": ..., "error": "REASON: message"}}), one line per input line, in order: whoever
 * wrote the input compares the output with the unprotected records.
 *
 * <p>Format 3 records (a {@code kafka-transit.protection} header) are bound to the line's topic
 * (or KAFKA_TRANSIT_SCHEMA_STREAM) and key as in the file; the key written out is the one the
 * source had (an encrypted key decrypted under KAFKA_TRANSIT_SCHEMA_RECORD_KEYS_KEY), and, when
 * the line gave headers, so are they, without the protection header ({@code [[name,
 * base64|null], ...]}), as the Go reader's TestSchemaRecordsFile writes them.
 *
 * <p>Environment: KAFKA_TRANSIT_SCHEMA_IN, KAFKA_TRANSIT_SCHEMA_OUT, KAFKA_TRANSIT_SCHEMA_REGISTRY
 * (the registry's base URL), KAFKA_TRANSIT_SCHEMA_KEY (the transit key), VAULT_ADDR, VAULT_TOKEN
 * (VAULT_CACERT); optionally KAFKA_TRANSIT_SCHEMA_TAGS, KAFKA_TRANSIT_SCHEMA_FIELDS (comma
 * separated), KAFKA_TRANSIT_SCHEMA_DETERMINISTIC=true, KAFKA_TRANSIT_SCHEMA_CONTEXT,
 * KAFKA_TRANSIT_SCHEMA_CONTEXT_FROM=record-key, and for format 3 KAFKA_TRANSIT_SCHEMA_STREAM,
 * KAFKA_TRANSIT_SCHEMA_REQUIRE_BINDING (stream,key), KAFKA_TRANSIT_SCHEMA_RECORD_KEYS_KEY,
 * KAFKA_TRANSIT_SCHEMA_KEEP_HMAC_KEYS=1 (the {@code kafka.transit.stream},
 * {@code require.binding}, {@code record.keys.key} and {@code keep.hmac.keys} properties; the
 * names the Go reader's test takes).
 * Skipped when KAFKA_TRANSIT_SCHEMA_IN is not set.
 */
class SchemaRecordsFileIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int BATCH = 500;

    private static Map<String, Object> properties() {
        Map<String, Object> p = new HashMap<>();
        p.put("kafka.transit.vault.address", System.getenv("VAULT_ADDR"));
        if (System.getenv("VAULT_CACERT") != null) {
            p.put("kafka.transit.vault.ca.file", System.getenv("VAULT_CACERT"));
        }
        if (System.getenv("KAFKA_TRANSIT_SCHEMA_KEY") != null) {
            p.put("kafka.transit.vault.key", System.getenv("KAFKA_TRANSIT_SCHEMA_KEY"));
        }
        p.put("kafka.transit.schema.registry.url", System.getenv("KAFKA_TRANSIT_SCHEMA_REGISTRY"));
        for (String[] setting : new String[][] {{"TAGS", "schema.tags"}, {"FIELDS", "schema.fields"},
            {"DETERMINISTIC", "schema.deterministic"}, {"CONTEXT", "schema.context"},
            {"CONTEXT_FROM", "schema.context.from"}, {"STREAM", "stream"}, {"REQUIRE_BINDING", "require.binding"},
            {"RECORD_KEYS_KEY", "record.keys.key"}}) {
            String value = System.getenv("KAFKA_TRANSIT_SCHEMA_" + setting[0]);
            if (value != null) {
                p.put("kafka.transit." + setting[1], value);
            }
        }
        String keepHmacKeys = System.getenv("KAFKA_TRANSIT_SCHEMA_KEEP_HMAC_KEYS");
        if (keepHmacKeys != null) {
            p.put("kafka.transit.keep.hmac.keys", String.valueOf(keepHmacKeys.equals("1")
                    || keepHmacKeys.equalsIgnoreCase("true")));
        }
        return p;
    }

    @Test
    void opensEveryRecordOfTheFile() throws IOException {
        String in = System.getenv("KAFKA_TRANSIT_SCHEMA_IN");
        Assumptions.assumeTrue(in != null && !in.isEmpty(), "KAFKA_TRANSIT_SCHEMA_IN is not set: no protected records "
                + "to open (set it, KAFKA_TRANSIT_SCHEMA_OUT, KAFKA_TRANSIT_SCHEMA_REGISTRY, KAFKA_TRANSIT_SCHEMA_KEY, "
                + "VAULT_ADDR and VAULT_TOKEN)");
        String out = System.getenv("KAFKA_TRANSIT_SCHEMA_OUT");
        Assumptions.assumeTrue(out != null && !out.isEmpty(), "KAFKA_TRANSIT_SCHEMA_OUT is not set");
        List<String> lines = Files.readAllLines(Path.of(in)).stream().filter(l -> !l.isBlank()).toList();
        int opened = 0;
        int refused = 0;
        int fields = 0;
        try (var deserializer = new KafkaTransitSchemaFieldsDeserializer();
             BufferedWriter writer = Files.newBufferedWriter(Path.of(out), StandardCharsets.UTF_8)) {
            deserializer.configure(properties(), false);
            SchemaFieldsReader reader = deserializer.reader();
            for (int start = 0; start < lines.size(); start += BATCH) {
                List<JsonNode> batch = new ArrayList<>();
                List<SchemaFieldsReader.Input> inputs = new ArrayList<>();
                for (String line : lines.subList(start, Math.min(lines.size(), start + BATCH))) {
                    JsonNode record = JSON.readTree(line);
                    batch.add(record);
                    inputs.add(SchemaFieldsReader.Input.of(record.hasNonNull("topic") ? record.get("topic").asText()
                            : null, bytes(record.get("key")), bytes(record.get("value")), headers(record)));
                }
                List<SchemaFieldsReader.Outcome> outcomes = reader.openAll(inputs);
                for (int i = 0; i < batch.size(); i++) {
                    ObjectNode line = JSON.createObjectNode();
                    line.set("key", batch.get(i).get("key"));
                    SchemaFieldsReader.Outcome outcome = outcomes.get(i);
                    if (outcome.error() == null && !inputs.get(i).protection().isEmpty()) {
                        try {
                            byte[] key = reader.sourceKey(inputs.get(i));
                            line.put("key", key == null ? null : Base64.getEncoder().encodeToString(key));
                        } catch (SchemaFieldsException e) {
                            outcome = new SchemaFieldsReader.Outcome(null, e);
                        }
                    }
                    if (outcome.error() == null && batch.get(i).hasNonNull("headers")) {
                        ArrayNode kept = line.putArray("headers");
                        for (Format3.Header h : headers(batch.get(i))) {
                            if (!h.name().equals(Format3.PROTECTION_HEADER)) {
                                kept.addArray().add(h.name()).add(h.value() == null ? null
                                        : Base64.getEncoder().encodeToString(h.value()));
                            }
                        }
                    }
                    if (outcome.error() != null) {
                        line.put("error", outcome.error().reason() + ": " + outcome.error().getMessage());
                        refused++;
                    } else if (outcome.record() == null) {
                        line.putNull("value");
                        opened++;
                    } else {
                        line.put("value", Base64.getEncoder().encodeToString(outcome.record().toWireFormat()));
                        fields += outcome.record().fields();
                        opened++;
                    }
                    writer.write(line.toString());
                    writer.newLine();
                }
            }
            System.out.println("java schema-fields reader: " + opened + " records opened (" + fields + " fields, "
                    + reader.vaultRequests() + " Vault requests), " + refused + " refused, of " + lines.size());
        }
        assertTrue(lines.isEmpty() || opened > 0, "no record of " + lines.size() + " opened");
    }

    /** A line's headers: pairs of a name and base64 (null: no value), or an object of names and texts. */
    private static List<Format3.Header> headers(JsonNode record) {
        List<Format3.Header> headers = new ArrayList<>();
        JsonNode given = record.path("headers");
        if (given.isArray()) {
            for (JsonNode pair : given) {
                headers.add(new Format3.Header(pair.get(0).asText(), bytes(pair.get(1))));
            }
        } else {
            for (var h : given.properties()) {
                headers.add(new Format3.Header(h.getKey(), h.getValue().isNull() ? null
                        : h.getValue().asText().getBytes(StandardCharsets.UTF_8)));
            }
        }
        return headers;
    }

    private static byte[] bytes(JsonNode node) {
        return node == null || node.isNull() ? null : Base64.getDecoder().decode(node.asText());
    }
}
