package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;

/**
 * The format 3 interoperability matrix, Java's row and column (.ci/e2e/sdk-matrix.sh sets
 * KAFKA_TRANSIT_MATRIX_DIR and KAFKA_TRANSIT_MATRIX_MODE, write or read, and VAULT_ADDR and
 * VAULT_TOKEN): the serializers and deserializers, configured by properties alone and called
 * as KafkaProducer and KafkaConsumer call them, write the source records with every option
 * on and read every writer's records back to the source.
 */
@EnabledIfEnvironmentVariable(named = "KAFKA_TRANSIT_MATRIX_DIR", matches = ".+")
class MatrixIT {
    private static final HexFormat HEX = HexFormat.of();
    private static final List<String> STAMPS = List.of("kafka-transit.policy", "kafka-transit.key");
    private final Path dir = Path.of(System.getenv("KAFKA_TRANSIT_MATRIX_DIR"));

    private static Map<String, Object> properties() {
        Map<String, Object> p = new HashMap<>();
        p.put("kafka.transit.vault.address", System.getenv("VAULT_ADDR"));
        if (System.getenv("VAULT_CACERT") != null) {
            p.put("kafka.transit.vault.ca.file", System.getenv("VAULT_CACERT"));
        }
        p.put("kafka.transit.vault.key", "customers");
        p.put("kafka.transit.record.keys", "encrypt");
        p.put("kafka.transit.record.keys.key", "customer-ids");
        p.put("kafka.transit.headers", "seal");
        p.put("kafka.transit.keep.headers", "traceparent");
        p.put("kafka.transit.bind", "stream,key");
        p.put("kafka.transit.compression", "zstd");
        p.put("kafka.transit.pad.to", "256");
        p.put("kafka.transit.require.binding", "stream,key");
        return p;
    }

    record Rec(String topic, byte[] key, byte[] value, Headers headers) {
    }

    private static byte[] hex(Object s) {
        return s == null ? null : HEX.parseHex((String) s);
    }

    private static Rec rec(Map<?, ?> m) {
        Headers headers = new RecordHeaders();
        for (Object h : (List<?>) m.get("headers")) {
            List<?> pair = (List<?>) h;
            headers.add((String) pair.get(0), hex(pair.get(1)));
        }
        return new Rec((String) m.get("topic"), hex(m.get("key")), hex(m.get("value")), headers);
    }

    private static String json(Rec r) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("topic", r.topic);
        m.put("key", r.key == null ? null : HEX.formatHex(r.key));
        m.put("value", r.value == null ? null : HEX.formatHex(r.value));
        List<Object> headers = new ArrayList<>();
        for (Header h : r.headers) {
            headers.add(java.util.Arrays.asList(h.key(), h.value() == null ? null : HEX.formatHex(h.value())));
        }
        m.put("headers", headers);
        return Json.write(m);
    }

    private List<Rec> sources() throws IOException {
        return ((List<?>) Json.parse(Files.readString(dir.resolve("records.json")))).stream()
                .map(o -> rec((Map<?, ?>) o)).toList();
    }

    @Test
    void matrix() throws IOException {
        String mode = System.getenv("KAFKA_TRANSIT_MATRIX_MODE");
        if ("write".equals(mode)) {
            write();
        } else {
            assertEquals("read", mode, "KAFKA_TRANSIT_MATRIX_MODE is write or read");
            read();
        }
    }

    private void write() throws IOException {
        try (var keys = new KafkaTransitKeySerializer<byte[]>(); var values = new KafkaTransitSerializer<byte[]>()) {
            keys.configure(properties(), true);
            values.configure(properties(), false);
            StringBuilder out = new StringBuilder();
            for (Rec r : sources()) {
                Headers headers = new RecordHeaders(r.headers.toArray());
                byte[] key = keys.serialize(r.topic, headers, r.key);
                byte[] value = values.serialize(r.topic, headers, r.value);
                out.append(json(new Rec(r.topic, key, value, headers))).append('\n');
            }
            Files.writeString(dir.resolve("java.jsonl"), out);
            System.out.println("java wrote " + sources().size() + " records (" + values.writer().dataKeysMinted()
                    + " data key)");
        }
    }

    private void read() throws IOException {
        List<Rec> sources = sources();
        try (var keys = new KafkaTransitKeyDeserializer<byte[]>(); var values = new KafkaTransitDeserializer<byte[]>();
             Stream<Path> files = Files.list(dir)) {
            keys.configure(properties(), true);
            values.configure(properties(), false);
            List<Path> written = files.filter(p -> p.toString().endsWith(".jsonl")).sorted().toList();
            assertEquals(true, !written.isEmpty(), "no writer's records to read");
            for (Path file : written) {
                List<String> lines = Files.readAllLines(file);
                assertEquals(sources.size(), lines.size(), file.toString());
                for (int i = 0; i < lines.size(); i++) {
                    Rec sink = rec((Map<?, ?>) Json.parse(lines.get(i)));
                    Rec source = sources.get(i);
                    // As KafkaConsumer calls them: no key deserializer for a null key.
                    byte[] key = sink.key == null ? null : keys.deserialize(sink.topic, sink.headers, sink.key);
                    byte[] value = values.deserialize(sink.topic, sink.headers, sink.value);
                    String where = file.getFileName() + " record " + i;
                    assertArrayEquals(source.key, key, where);
                    assertArrayEquals(source.value, value, where);
                    List<String> expected = new ArrayList<>();
                    for (Header h : source.headers) {
                        if (h.key().equals("traceparent")) {
                            expected.add(h.key() + "=" + hexOf(h.value()));
                        }
                    }
                    expected.add(Format3.PROTECTION_HEADER);
                    for (Header h : source.headers) {
                        if (!h.key().equals("traceparent") && source.value != null) {
                            expected.add(h.key() + "=" + hexOf(h.value()));
                        }
                    }
                    List<String> got = new ArrayList<>();
                    for (Header h : sink.headers) {
                        // kafka-transit's envelope-seal stamps its records in clear: no source
                        // header, and the deserializers pass them on as they are.
                        if (STAMPS.contains(h.key())) {
                            continue;
                        }
                        got.add(h.key().equals(Format3.PROTECTION_HEADER) ? h.key() : h.key() + "=" + hexOf(h.value()));
                    }
                    assertEquals(expected, got, where);
                }
                Rec moved = rec((Map<?, ?>) Json.parse(lines.get(0)));
                assertThrows(SerializationException.class, () -> {
                    keys.deserialize("payments.eu", moved.headers, moved.key);
                    values.deserialize("payments.eu", moved.headers, moved.value);
                }, file + ": a record moved to another topic");
                System.out.println("java read " + lines.size() + " records of " + file.getFileName()
                        + "; a moved one was refused");
            }
        }
    }

    private static String hexOf(byte[] b) {
        return b == null ? "null" : HEX.formatHex(b);
    }
}
