package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;

/**
 * Reads a file of sink records (.ci/e2e/protect-all.sh writes it; the Go reader's
 * TestRecordsFile and demos/python/records_check.py read the same file) with the key and
 * value deserializers, configured by properties alone and called as KafkaConsumer calls
 * them: each record must come back as its line's {@code expect} says (key, value, and the
 * headers: those in clear but the protection header, then the sealed ones), or be refused
 * for the reason its {@code refuse} names. Binding to stream and key is required; values
 * and envelopes are under transit key {@code customers}, record keys under
 * {@code customer-ids}. Run with KAFKA_TRANSIT_E2E_RECORDS, VAULT_ADDR and VAULT_TOKEN.
 *
 * <p>With KAFKA_TRANSIT_SUBJECT_KEYS=PREFIX (records sealed per data subject,
 * .ci/e2e/forget.sh) envelopes are opened under their subjects' keys
 * ({@code kafka.transit.subject.keys}) instead of {@code customers}. A record whose subject
 * was forgotten is written as an error line on standard output, which Failsafe keeps in
 * {@code target/failsafe-reports/io.kafkatransit.client.RecordsFileIT-output.txt}:
 * {@code {"line":N,"error":"subject forgotten: ..."}} (N counts from 0). The script counts
 * them: it is not a problem here, whatever the line expects, and a line may also say
 * {@code "refuse": "forgotten"} (or {@code "subject_forgotten"}).
 */
@EnabledIfEnvironmentVariable(named = "KAFKA_TRANSIT_E2E_RECORDS", matches = ".+")
class RecordsFileIT {
    private static final HexFormat HEX = HexFormat.of();

    private static Map<String, Object> properties() {
        Map<String, Object> p = new HashMap<>();
        p.put("kafka.transit.vault.address", System.getenv("VAULT_ADDR"));
        if (System.getenv("VAULT_CACERT") != null) {
            p.put("kafka.transit.vault.ca.file", System.getenv("VAULT_CACERT"));
        }
        String subjectKeys = System.getenv("KAFKA_TRANSIT_SUBJECT_KEYS");
        if (subjectKeys != null && !subjectKeys.isEmpty()) {
            p.put("kafka.transit.subject.keys", subjectKeys);
        } else {
            p.put("kafka.transit.vault.key", "customers");
        }
        p.put("kafka.transit.record.keys.key", "customer-ids");
        p.put("kafka.transit.require.binding", "stream,key");
        return p;
    }

    private static byte[] hex(Object s) {
        return s == null ? null : HEX.parseHex((String) s);
    }

    private static List<String> headers(Object list) {
        List<String> out = new ArrayList<>();
        for (Object h : (List<?>) list) {
            List<?> pair = (List<?>) h;
            out.add(pair.get(0) + "=" + (pair.get(1) == null ? "null" : pair.get(1)));
        }
        return out;
    }

    private static String hexOf(byte[] b) {
        return b == null ? "null" : HEX.formatHex(b);
    }

    @Test
    void readsEveryRecordAsExpected() throws IOException {
        List<String> lines = Files.readAllLines(Path.of(System.getenv("KAFKA_TRANSIT_E2E_RECORDS")));
        int read = 0;
        int refused = 0;
        int forgotten = 0;
        List<String> problems = new ArrayList<>();
        try (var keys = new KafkaTransitKeyDeserializer<byte[]>(); var values = new KafkaTransitDeserializer<byte[]>()) {
            keys.configure(properties(), true);
            values.configure(properties(), false);
            for (int i = 0; i < lines.size(); i++) {
                Map<?, ?> line = (Map<?, ?>) Json.parse(lines.get(i));
                String topic = (String) line.get("topic");
                byte[] sinkKey = hex(line.get("key"));
                Headers sinkHeaders = new RecordHeaders();
                for (Object h : (List<?>) line.get("headers")) {
                    List<?> pair = (List<?>) h;
                    sinkHeaders.add((String) pair.get(0), hex(pair.get(1)));
                }
                byte[] key;
                byte[] value;
                try {
                    // As KafkaConsumer calls them: the key first (none for a null key), then the value.
                    key = sinkKey == null ? null : keys.deserialize(topic, sinkHeaders, sinkKey);
                    value = values.deserialize(topic, sinkHeaders, hex(line.get("value")));
                } catch (SerializationException e) {
                    String reason = e.getCause() instanceof TransitReadException t ? t.reason().name() : "none";
                    if (reason.equals("SUBJECT_FORGOTTEN")) {
                        // The cause's message, which starts "subject forgotten"; the
                        // SerializationException's names the topic first.
                        System.out.println("{\"line\":" + i + ",\"error\":" + Json.quote(e.getCause().getMessage())
                                + "}");
                        forgotten++;
                    } else if (line.get("refuse") != null && reason.equalsIgnoreCase((String) line.get("refuse"))) {
                        refused++;
                    } else {
                        problems.add("line " + i + ": refused (" + reason + "): " + e.getMessage());
                    }
                    continue;
                }
                if (line.get("refuse") != null) {
                    // "forgotten" too: a record of a forgotten subject that opens is a failed forget.
                    problems.add("line " + i + ": read, though it must be refused (" + line.get("refuse") + ")");
                    continue;
                }
                Map<?, ?> expect = (Map<?, ?>) line.get("expect");
                List<String> got = new ArrayList<>();
                for (Header h : sinkHeaders) {
                    if (!h.key().equals(Format3.PROTECTION_HEADER)) {
                        got.add(h.key() + "=" + hexOf(h.value()));
                    }
                }
                if (!Arrays.equals(hex(expect.get("key")), key)) {
                    problems.add("line " + i + ": its key read back differently");
                } else if (!Arrays.equals(hex(expect.get("value")), value)) {
                    problems.add("line " + i + ": its value read back differently");
                } else if (!headers(expect.get("headers")).equals(got)) {
                    problems.add("line " + i + ": its headers read back differently: " + got.size() + " headers");
                } else {
                    read++;
                }
            }
        }
        // Not the words "subject forgotten": the script counts the lines that hold them.
        System.out.println("java reader: " + read + " records read back byte-identical (key, value, headers), "
                + refused + " refused as expected, " + forgotten + " of forgotten subjects refused");
        if (!problems.isEmpty()) {
            fail(problems.size() + " problems, e.g. " + problems.subList(0, Math.min(5, problems.size())));
        }
        assertTrue(read > 0 || forgotten > 0, "no record read");
        assertEquals(lines.size(), read + refused + forgotten);
    }
}
