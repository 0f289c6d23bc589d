package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.google.protobuf.DynamicMessage;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.junit.jupiter.api.Test;

import io.kafkatransit.client.schema.OpenedRecord;
import io.kafkatransit.client.schema.RegisteredSchema;
import io.kafkatransit.client.schema.SchemaFieldsException;
import io.kafkatransit.client.schema.SchemaFieldsException.Reason;
import io.kafkatransit.client.schema.SchemaFieldsOptions;
import io.kafkatransit.client.schema.SchemaFieldsReader;

/**
 * docs/schema-fields-test-vectors.json (path from the kafka.transit.schema.vectors system
 * property), as docs' contract for the readers says: every vector's protected record opens,
 * with a stand-in Vault (base64 after {@code vault:v1:}, no context or associated data: format
 * 2), to what Apache Avro, protobuf-java or Jackson decode from the plaintext record, asking for
 * exactly the located contents in order; {@link Format3#binding} gives each binding, and the
 * same record read as format 3 sends each field's binding as associated data; every refused case
 * is refused with its reason, without asking Vault anything. A missing file fails the test.
 */
class SchemaFieldsVectorsTest {
    private static final HexFormat HEX = HexFormat.of();
    private static final ObjectMapper JSON = JsonMapper.builder()
            .enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS).build();
    private static final String PREFIX = "vault:v1:";

    /** What each {@code expect} of the vectors is among this reader's reasons. */
    private static final Map<String, Set<Reason>> EXPECT = Map.of(
            // Bad message indexes are DECODE here (SchemaFieldsException.Reason), short or
            // unmagic framing FORMAT.
            "wire", Set.of(Reason.FORMAT, Reason.DECODE),
            "decode", Set.of(Reason.DECODE),
            "schema", Set.of(Reason.SCHEMA),
            "not a ciphertext", Set.of(Reason.NOT_CIPHERTEXT));

    private static JsonNode document() throws IOException {
        Path path = Path.of(System.getProperty("kafka.transit.schema.vectors",
                "../../docs/schema-fields-test-vectors.json"));
        assertTrue(Files.isRegularFile(path), "the schema'd-record test vectors are missing: " + path.toAbsolutePath());
        return JSON.readTree(Files.readString(path));
    }

    /**
     * A stand-in Vault: opens {@code vault:v1:<base64>} if it is one of the vector's located
     * fields, with the associated data the vector gives that field (none for format 2), each at
     * most once. The reader may ask in another order than the body's (it walks the decoded
     * record), and for a non-repeated Protobuf field on the wire twice only the occurrence the
     * decoded record keeps; it never asks for anything else.
     */
    private static final class StandIn implements TransitDecrypter {
        record Expected(String ciphertext, byte[] associatedData) {
        }

        final List<Item> asked = new ArrayList<>();
        final List<Expected> expected;
        final List<String> problems = new ArrayList<>();

        StandIn(List<Expected> expected) {
            this.expected = new ArrayList<>(expected);
        }

        @Override
        public List<Decryption> decrypt(String keyName, List<String> ciphertexts) {
            return decryptItems(keyName, ciphertexts.stream().map(c -> new Item(c, null, null)).toList());
        }

        @Override
        public List<Decryption> decryptItems(String keyName, List<Item> items) {
            List<Decryption> out = new ArrayList<>();
            for (Item item : items) {
                asked.add(item);
                assertNull(item.context(), "no derivation context: the vectors are not deterministic");
                Expected match = expected.stream().filter(e -> e.ciphertext.equals(item.ciphertext())
                        && java.util.Arrays.equals(e.associatedData, item.associatedData())).findFirst().orElse(null);
                if (!item.ciphertext().startsWith(PREFIX)) {
                    out.add(new Decryption.Failed("invalid ciphertext"));
                } else if (match == null) {
                    problems.add("asked for a field that is not located there, or with other associated data");
                    out.add(new Decryption.Failed("cipher: message authentication failed"));
                } else {
                    expected.remove(match);
                    out.add(new Decryption.Plaintext(Base64.getDecoder().decode(item.ciphertext().substring(
                            PREFIX.length()))));
                }
            }
            return out;
        }
    }

    /** The vector's located fields as stand-in ciphertexts, with {@code bindings} (null: none) as associated data. */
    private static List<StandIn.Expected> located(JsonNode v, List<byte[]> bindings) {
        List<StandIn.Expected> out = new ArrayList<>();
        JsonNode located = v.get("located");
        for (int i = 0; i < located.size(); i++) {
            out.add(new StandIn.Expected(PREFIX + Base64.getEncoder().encodeToString(hex(located.get(i)
                    .get("content_hex"))), bindings == null ? null : bindings.get(i)));
        }
        return out;
    }

    private static byte[] hex(JsonNode node) {
        return node == null || node.isNull() ? null : HEX.parseHex(node.asText());
    }

    private static List<String> strings(JsonNode array) {
        List<String> out = new ArrayList<>();
        array.forEach(n -> out.add(n.asText()));
        return out;
    }

    private static RegisteredSchema schema(JsonNode v) {
        List<RegisteredSchema.Reference> references = new ArrayList<>();
        v.path("references").forEach(r -> references.add(new RegisteredSchema.Reference(r.get("name").asText(),
                r.get("schema").asText())));
        return new RegisteredSchema(RegisteredSchema.Type.valueOf(v.get("schema_type").asText()),
                v.get("schema").asText(), references);
    }

    private static SchemaFieldsReader reader(JsonNode v, TransitDecrypter vault) {
        int id = v.get("schema_id").asInt();
        return new SchemaFieldsReader(SchemaFieldsTestSupport.source(id, schema(v)), vault,
                new SchemaFieldsOptions("customers", strings(v.get("tags")), strings(v.get("fields")), false, null,
                        false));
    }

    /** Where the encoded body starts: after the 5-byte header and, for Protobuf, the message indexes. */
    private static int bodyStart(byte[] value, String type) {
        int at = 5;
        if (type.equals("PROTOBUF")) {
            long count = 0;
            for (long i = -1; i < count; i++) {
                long raw = 0;
                for (int shift = 0; ; shift += 7) {
                    byte b = value[at++];
                    raw |= (long) (b & 0x7f) << shift;
                    if ((b & 0x80) == 0) {
                        break;
                    }
                }
                if (i == -1) {
                    count = (raw >>> 1) ^ -(raw & 1);
                }
            }
        }
        return at;
    }

    /** The plaintext record as the format's ordinary library decodes it. */
    private static Object decodedPlaintext(JsonNode v, OpenedRecord opened) throws IOException {
        byte[] value = hex(v.get("value_hex"));
        String type = v.get("schema_type").asText();
        byte[] body = java.util.Arrays.copyOfRange(value, bodyStart(value, type), value.length);
        return switch (type) {
            case "AVRO" -> {
                Schema.Parser parser = new Schema.Parser();
                for (JsonNode r : v.path("references")) {
                    parser.parse(r.get("schema").asText());
                }
                BinaryDecoder decoder = DecoderFactory.get().binaryDecoder(body, null);
                Object datum = new GenericDatumReader<>(parser.parse(v.get("schema").asText())).read(null, decoder);
                assertTrue(decoder.isEnd(), "the plaintext record has trailing bytes");
                yield datum;
            }
            // The descriptor of the message the indexes name is the reader's (protobuf-java has no
            // .proto text parser); the decoding is protobuf-java's own.
            case "PROTOBUF" -> DynamicMessage.parseFrom(((DynamicMessage) opened.value()).getDescriptorForType(), body);
            case "JSON" -> JSON.readTree(body);
            default -> throw new AssertionError("unknown schema_type " + type);
        };
    }

    @Test
    void everyVectorOpensToItsPlaintextRecord() throws IOException {
        JsonNode vectors = document().get("vectors");
        assertFalse(vectors.isEmpty(), "no vectors");
        for (JsonNode v : vectors) {
            String name = v.get("name").asText();
            StandIn vault = new StandIn(located(v, null));
            OpenedRecord opened = reader(v, vault).open(hex(v.get("protected_hex")));
            assertEquals(decodedPlaintext(v, opened), opened.value(), name);
            assertEquals(List.of(), vault.problems, name);
            assertFalse(vault.asked.isEmpty() && !v.get("located").isEmpty(), name + ": no field opened");
            assertEquals(vault.asked.size(), opened.fields(), name);
        }
    }

    @Test
    void everyBindingIsTheBindingFunctionsAndTheReaderSendsItAsAssociatedData() throws IOException {
        for (JsonNode v : document().get("vectors")) {
            String name = v.get("name").asText();
            JsonNode bindings = v.get("bindings");
            assertEquals(v.get("located").size(), bindings.size(), name + ": a binding per located field");
            List<byte[]> expected = new ArrayList<>();
            int flags = -1;
            String stream = null;
            byte[] key = null;
            for (int i = 0; i < bindings.size(); i++) {
                JsonNode b = bindings.get(i);
                assertEquals(v.get("located").get(i).get("path").asText(), b.get("path").asText(), name);
                byte[] binding = hex(b.get("binding_hex"));
                assertArrayEquals(binding, Format3.binding(b.get("flags").asInt(), b.get("stream").asText(),
                        hex(b.get("record_key_hex")), b.get("path").asText()), name + " " + i);
                expected.add(binding);
                if (i > 0) {
                    // One record: one flags byte, stream and key for all its fields.
                    assertEquals(flags, b.get("flags").asInt(), name);
                    assertEquals(stream, b.get("stream").asText(), name);
                    assertArrayEquals(key, hex(b.get("record_key_hex")), name);
                }
                flags = b.get("flags").asInt();
                stream = b.get("stream").asText();
                key = hex(b.get("record_key_hex"));
            }
            if (flags < 0) {
                continue;
            }
            // The same record read as format 3 from that stream under that key: the stand-in opens a
            // field only if its associated data is the vector's binding for it.
            StandIn vault = new StandIn(located(v, expected));
            OpenedRecord opened = reader(v, vault).open(SchemaFieldsReader.Input.of(stream, key,
                    hex(v.get("protected_hex")), List.of(new Format3.Header(Format3.PROTECTION_HEADER,
                            Format3.headerValue(flags)))));
            assertEquals(decodedPlaintext(v, opened), opened.value(), name);
            assertEquals(List.of(), vault.problems, name);
        }
    }

    @Test
    void everyRefusedCaseIsRefusedWithoutAskingVault() throws IOException {
        JsonNode refused = document().get("refused");
        assertFalse(refused.isEmpty(), "no refused cases");
        List<String> problems = new ArrayList<>();
        for (JsonNode r : refused) {
            String name = r.get("name").asText();
            Set<Reason> reasons = EXPECT.get(r.get("expect").asText());
            if (reasons == null) {
                fail(name + ": unknown expect " + r.get("expect"));
            }
            StandIn vault = new StandIn(List.of());
            try {
                OpenedRecord opened = reader(r, vault).open(hex(r.get("value_hex")));
                problems.add(name + ": opened (" + opened + ")");
            } catch (SchemaFieldsException e) {
                if (!reasons.contains(e.reason())) {
                    problems.add(name + ": refused as " + e.reason() + " (" + e.getMessage() + "), expected "
                            + reasons);
                }
            }
            if (!vault.asked.isEmpty()) {
                problems.add(name + ": Vault was asked to decrypt " + vault.asked.size() + " field(s)");
            }
        }
        assertTrue(problems.isEmpty(), String.join("\n", problems));
    }
}
