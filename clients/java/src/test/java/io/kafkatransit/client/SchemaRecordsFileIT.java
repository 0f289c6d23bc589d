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
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import io.kafkatransit.client.schema.KafkaTransitSchemaFieldsDeserializer;
import io.kafkatransit.client.schema.SchemaFieldsReader;

/**
 * Opens a file of schema'd records that {@code encrypt-schema-fields} protected (JSON lines
 * {@code {"key": base64|null, "value": base64}}, optionally {@code "headers": {"name": "text"}})
 * with the deserializer configured by properties alone, against a real Schema Registry and
 * Vault/OpenBao, and writes each opened record re-encoded in Confluent's wire format under the
 * same schema id ({@code {"key": ..., "value": base64}}), or why it could not be opened
 * ({@code {"key": ..., "error": "REASON: message"}}), one line per input line, in order:
 * whoever wrote the input compares the output with the unprotected records.
 *
 * <p>Environment: KAFKA_TRANSIT_SCHEMA_IN, KAFKA_TRANSIT_SCHEMA_OUT, KAFKA_TRANSIT_SCHEMA_REGISTRY
 * (the registry's base URL), KAFKA_TRANSIT_SCHEMA_KEY (the transit key), VAULT_ADDR, VAULT_TOKEN
 * (VAULT_CACERT); optionally KAFKA_TRANSIT_SCHEMA_TAGS, KAFKA_TRANSIT_SCHEMA_FIELDS (comma
 * separated), KAFKA_TRANSIT_SCHEMA_DETERMINISTIC=true, KAFKA_TRANSIT_SCHEMA_CONTEXT,
 * KAFKA_TRANSIT_SCHEMA_CONTEXT_FROM=record-key. Skipped when KAFKA_TRANSIT_SCHEMA_IN is not set.
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
        for (String[] setting : new String[][] {{"TAGS", "tags"}, {"FIELDS", "fields"},
            {"DETERMINISTIC", "deterministic"}, {"CONTEXT", "context"}, {"CONTEXT_FROM", "context.from"}}) {
            String value = System.getenv("KAFKA_TRANSIT_SCHEMA_" + setting[0]);
            if (value != null) {
                p.put("kafka.transit.schema." + setting[1], value);
            }
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
                    JsonNode headers = record.path("headers");
                    inputs.add(new SchemaFieldsReader.Input(bytes(record.get("key")), bytes(record.get("value")),
                            headers.hasNonNull(SchemaFieldsReader.KEY_HEADER)
                                    ? headers.get(SchemaFieldsReader.KEY_HEADER).asText() : null,
                            headers.hasNonNull(SchemaFieldsReader.POLICY_HEADER)
                                    ? headers.get(SchemaFieldsReader.POLICY_HEADER).asText() : null));
                }
                List<SchemaFieldsReader.Outcome> outcomes = reader.openAll(inputs);
                for (int i = 0; i < batch.size(); i++) {
                    ObjectNode line = JSON.createObjectNode();
                    line.set("key", batch.get(i).get("key"));
                    SchemaFieldsReader.Outcome outcome = outcomes.get(i);
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

    private static byte[] bytes(JsonNode node) {
        return node == null || node.isNull() ? null : Base64.getDecoder().decode(node.asText());
    }
}
