package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import org.junit.jupiter.api.Test;

/** docs/envelope-test-vectors.json "format3": what every reader opens and refuses. */
class Format3VectorsTest {
    private static final HexFormat HEX = HexFormat.of();

    private static Map<?, ?> format3() throws IOException {
        Map<?, ?> document = (Map<?, ?>) Json.parse(Files.readString(Path.of(System.getProperty(
                "kafka.transit.vectors", "../../docs/envelope-test-vectors.json"))));
        return (Map<?, ?>) document.get("format3");
    }

    private static byte[] hex(Object text) {
        return text == null ? null : HEX.parseHex((String) text);
    }

    private static List<Format3.Header> headers(Object pairs) {
        List<Format3.Header> out = new ArrayList<>();
        for (Object pair : (List<?>) pairs) {
            List<?> p = (List<?>) pair;
            out.add(new Format3.Header((String) p.get(0), hex(p.get(1))));
        }
        return out;
    }

    /** Unwraps to the vector's data key; "restores" an encrypted record key (no real Vault text in vectors). */
    private static TransitDecrypter vault(byte[] dataKey) {
        return new TransitDecrypter() {
            @Override
            public List<Decryption> decrypt(String keyName, List<String> ciphertexts) {
                return ciphertexts.stream().map(c -> (Decryption) new Decryption.Plaintext(dataKey.clone())).toList();
            }

            @Override
            public List<Decryption> decryptItems(String keyName, List<Item> items) {
                return items.stream().map(i -> (Decryption) new Decryption.Plaintext(
                        ("restored:" + new String(i.context(), StandardCharsets.UTF_8)).getBytes(StandardCharsets.UTF_8)))
                        .toList();
            }
        };
    }

    @Test
    void everyVersion3VectorOpensAndTheUncompressedOnesSealToTheirBytes() throws IOException {
        List<?> envelopes = (List<?>) format3().get("envelopes");
        assertTrue(envelopes.size() >= 8);
        for (Object o : envelopes) {
            Map<?, ?> v = (Map<?, ?>) o;
            String name = (String) v.get("name");
            int flags = ((Number) v.get("flags")).intValue();
            String stream = (String) v.get("stream");
            byte[] key = hex(v.get("record_key_hex"));
            byte[] envelope = hex(v.get("envelope_hex"));
            TransitReader reader = new TransitReader(vault(hex(v.get("data_key_hex"))), null, 10,
                    new RecordOptions(null, Set.of(), "customer-ids", 1 << 20));
            List<Format3.Header> received = List.of(new Format3.Header("kept", new byte[] {1}),
                    new Format3.Header(Format3.PROTECTION_HEADER, ((String) v.get("protection_header")).getBytes()));
            TransitReader.Read read = reader.readRecord(stream, key, envelope, received);
            assertArrayEquals(hex(v.get("value_hex")), read.value(), name);
            List<Format3.Header> expected = new ArrayList<>(List.of(received.get(0)));
            expected.addAll(headers(v.get("sealed_headers")));
            assertEquals(expected, read.headers(), name);
            assertArrayEquals((flags & Format3.KEYS_ENCRYPTED) != 0
                    ? ("restored:" + stream).getBytes(StandardCharsets.UTF_8) : key, read.key(), name);
            assertArrayEquals(hex(v.get("binding_hex")), Format3.binding(flags, stream, key, null), name);
            if (v.get("compression").equals("none")) {
                byte[] plaintext = (flags & Format3.HEADERS) != 0
                        ? Format3.frame(headers(v.get("sealed_headers")), hex(v.get("value_hex"))) : hex(v.get("value_hex"));
                byte[] dataKey = hex(v.get("data_key_hex"));
                byte[] sealed = TransitWriter.sealV3(dataKey, Format3.commitment(dataKey), (String) v.get("key_name"),
                        (String) v.get("wrapped_key"), hex(v.get("nonce_hex")), flags,
                        Format3.encodeBody(plaintext, flags, ((Number) v.get("pad_to")).intValue()),
                        Format3.bindingParts(flags, stream, key, null));
                assertArrayEquals(envelope, sealed, name);
            }
        }
        for (Object o : (List<?>) format3().get("bindings")) {
            Map<?, ?> b = (Map<?, ?>) o;
            assertArrayEquals(hex(b.get("binding_hex")), Format3.binding(((Number) b.get("flags")).intValue(),
                    (String) b.get("stream"), hex(b.get("record_key_hex")), (String) b.get("pointer")));
        }
        for (Object o : (List<?>) format3().get("frames")) {
            Map<?, ?> f = (Map<?, ?>) o;
            assertArrayEquals(hex(f.get("frame_hex")), Format3.frame(headers(f.get("headers")), hex(f.get("value_hex"))));
            Format3.Unframed back = Format3.unframe(hex(f.get("frame_hex")));
            assertEquals(headers(f.get("headers")), back.headers());
            assertArrayEquals(hex(f.get("value_hex")), back.value());
        }
    }

    private static final Map<String, TransitReadException.Reason> REASONS = Map.of(
            "authentication", TransitReadException.Reason.AUTHENTICATION,
            "truncated", TransitReadException.Reason.TRUNCATED,
            "flags", TransitReadException.Reason.FLAGS,
            "commitment", TransitReadException.Reason.COMMITMENT,
            "padding", TransitReadException.Reason.PADDING,
            "decompression", TransitReadException.Reason.DECOMPRESSION,
            "too large", TransitReadException.Reason.TOO_LARGE,
            "frame", TransitReadException.Reason.FRAME,
            "unbound", TransitReadException.Reason.UNBOUND);

    @Test
    void everyTamperedVersion3RecordIsRefusedForItsReason() throws IOException {
        List<?> tampered = (List<?>) format3().get("tampered");
        assertTrue(tampered.size() >= 20);
        for (Object o : tampered) {
            Map<?, ?> c = (Map<?, ?>) o;
            String name = (String) c.get("name");
            Set<String> require = ((List<?>) c.get("require_binding")).stream().map(Object::toString)
                    .collect(Collectors.toSet());
            TransitReader reader = new TransitReader(vault(hex(c.get("data_key_hex"))), null, 10,
                    new RecordOptions(null, require, "customer-ids", ((Number) c.get("max_plaintext_bytes")).intValue()));
            List<Format3.Header> headers = c.get("protection_header") == null ? List.of()
                    : List.of(new Format3.Header(Format3.PROTECTION_HEADER,
                            ((String) c.get("protection_header")).getBytes(StandardCharsets.UTF_8)));
            TransitReadException e = assertThrows(TransitReadException.class, () -> reader.readRecord(
                    (String) c.get("stream"), hex(c.get("record_key_hex")), hex(c.get("envelope_hex")), headers), name);
            assertEquals(REASONS.get((String) c.get("expect")), e.reason(), name + ": " + e.getMessage());
        }
    }
}
