package io.kafkatransit.client;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/** docs/envelope-test-vectors.json (path from the kafka.transit.vectors system property). */
final class Vectors {
    static final HexFormat HEX = HexFormat.of();

    record Sealed(String name, int version, byte[] dataKey, String keyName, String wrappedKey, byte[] plaintext, byte[] aad,
                  byte[] envelope) {
    }

    record Tampered(String name, byte[] dataKey, byte[] aad, byte[] envelope, String expect) {
    }

    private static Map<?, ?> document() {
        try {
            return (Map<?, ?>) Json.parse(Files.readString(Path.of(System.getProperty("kafka.transit.vectors",
                    "../../docs/envelope-test-vectors.json"))));
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    private static byte[] hex(Map<?, ?> fields, String name) {
        return HEX.parseHex((String) fields.get(name));
    }

    static List<Sealed> sealed() {
        return ((List<?>) document().get("vectors")).stream().map(v -> (Map<?, ?>) v)
                .map(v -> new Sealed((String) v.get("name"), ((Number) v.get("format_version")).intValue(),
                        hex(v, "data_key_hex"), (String) v.get("key_name"),
                        (String) v.get("wrapped_key"), hex(v, "plaintext_hex"), hex(v, "aad_hex"),
                        hex(v, "envelope_hex")))
                .toList();
    }

    static List<Tampered> tampered() {
        return ((List<?>) document().get("tampered")).stream().map(v -> (Map<?, ?>) v)
                .map(v -> new Tampered((String) v.get("name"), hex(v, "data_key_hex"), hex(v, "aad_hex"),
                        hex(v, "envelope_hex"), (String) v.get("expect")))
                .toList();
    }
}
