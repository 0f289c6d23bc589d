package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

import com.sun.net.httpserver.HttpServer;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.junit.jupiter.api.Test;

import io.kafkatransit.client.TransitReadException.Reason;

/**
 * Records sealed per data subject (docs/forgetting.md): each envelope opens under the
 * subject's key it names when the name has the configured prefix; one whose subject's key
 * Vault deleted ({@code kafka-transit forget}) fails with SUBJECT_FORGOTTEN while the other
 * subjects' records of the batch open; envelopes under other keys are refused before Vault
 * is asked; a cached data key is unwrapped again after the cache's max age.
 */
class SubjectKeysTest {
    private static final String PREFIX = "customers-";
    /** Subjects' key names: the prefix and a 32-character pseudonym, as envelope-seal names them. */
    private static final String ALICE = PREFIX + "q3k9Xw-_".repeat(4);
    private static final String BOB = PREFIX + "Zb7Hn2pQ".repeat(4);
    private static final String CAROL = PREFIX + "m0Lr-5Tc".repeat(4);
    private static final RecordOptions BOUND = new RecordOptions(null, Set.of("stream", "key"), null, 1 << 20);
    private static final SecureRandom RANDOM = new SecureRandom();

    private final FakeTransit transit = new FakeTransit();
    private final AtomicLong now = new AtomicLong(1_000_000_000L);

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private TransitReader reader(TransitDecrypter vault) {
        return new TransitReader(vault, null, PREFIX, 100, Duration.ofSeconds(60), BOUND, now::get);
    }

    /** A version 2 envelope of {@code plaintext} under a fresh data key of transit key {@code keyName}. */
    private byte[] sealV2(String keyName, byte[] plaintext) {
        TransitEncrypter.DataKey dataKey = transit.dataKey(keyName);
        byte[] name = keyName.getBytes(StandardCharsets.US_ASCII);
        byte[] wrapped = dataKey.wrapped().getBytes(StandardCharsets.US_ASCII);
        byte[] nonce = new byte[Envelope.NONCE_LENGTH];
        RANDOM.nextBytes(nonce);
        ByteBuffer head = ByteBuffer.allocate(5 + name.length + wrapped.length + nonce.length)
                .put((byte) 2).putShort((short) name.length).put(name).putShort((short) wrapped.length).put(wrapped)
                .put(nonce);
        try {
            Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
            cipher.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(dataKey.plaintext(), "AES"),
                    new GCMParameterSpec(128, nonce));
            cipher.updateAAD(head.array(), 0, 3 + name.length);
            byte[] sealed = cipher.doFinal(plaintext);
            return ByteBuffer.allocate(head.capacity() + sealed.length).put(head.array()).put(sealed).array();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    /** envelope-seal with subject and bind = ["stream", "key"]: format 3 under the subject's key. */
    private TransitWriter writer(String subjectKey) {
        return new TransitWriter(transit, new WriterOptions(subjectKey, "keep", null, false, List.of(),
                List.of("stream", "key"), null, "none", 0, 1_000_000, Duration.ofHours(1)));
    }

    private static TransitReadException failure(TransitReader.Outcome outcome) {
        return assertInstanceOf(TransitReader.Outcome.Failed.class, outcome).error();
    }

    private static void assertForgotten(TransitReadException e) {
        assertEquals(Reason.SUBJECT_FORGOTTEN, e.reason(), e.getMessage());
        assertTrue(e.getMessage().startsWith("subject forgotten"), e.getMessage());
        assertTrue(e.getMessage().startsWith(TransitReadException.FORGOTTEN));
    }

    @Test
    void aForgottenSubjectFailsDistinctlyAndTheOtherSubjectsOfTheBatchOpen() {
        byte[] alice = sealV2(ALICE, bytes("{\"name\":\"Alice\"}"));
        byte[] bob = sealV2(BOB, bytes("{\"name\":\"Bob\"}"));
        byte[] carol = sealV2(CAROL, bytes("{\"name\":\"Carol\"}"));
        byte[] bobAgain = sealV2(BOB, bytes("{\"name\":\"Bob\",\"again\":true}"));
        transit.delete(BOB);
        try (TransitReader reader = reader(transit)) {
            List<TransitReader.Outcome> outcomes = reader.readAll(List.of(alice, bob, carol, bobAgain));
            assertArrayEquals(bytes("{\"name\":\"Alice\"}"), outcomes.get(0).plaintext());
            assertArrayEquals(bytes("{\"name\":\"Carol\"}"), outcomes.get(2).plaintext());
            for (int i : new int[] {1, 3}) {
                TransitReadException e = failure(outcomes.get(i));
                assertForgotten(e);
                assertFalse(e.getMessage().contains("Bob"), "no record data in the message");
            }
            assertEquals(2, reader.cachedKeys(), "nothing cached for the forgotten subject");
            // One request per subject's key, as for any transit key.
            assertEquals(3, transit.decryptRequests.size());
        }
    }

    @Test
    void format3RecordsOfAForgottenSubjectFailInReadRecordAndTheDeserializer() {
        TransitWriter.Sealed alice = writer(ALICE).seal("orders", bytes("alice"), bytes("A"), List.of());
        TransitWriter.Sealed bob = writer(BOB).seal("orders", bytes("bob"), bytes("B"), List.of());
        transit.delete(BOB);
        try (TransitReader reader = reader(transit)) {
            TransitReader.Read read = reader.readRecord("orders", alice.key(), alice.value(), alice.headers());
            assertArrayEquals(bytes("A"), read.value());
            assertArrayEquals(bytes("alice"), read.key());
            assertForgotten(assertThrows(TransitReadException.class,
                    () -> reader.readRecord("orders", bob.key(), bob.value(), bob.headers())));

            // As a consumer calls them: the key deserializer hands the key to the value's.
            try (var keys = new KafkaTransitKeyDeserializer<byte[]>(reader, null);
                 var values = new KafkaTransitDeserializer<byte[]>(reader, null)) {
                keys.configure(Map.of(), true);
                values.configure(Map.of(), false);
                RecordHeaders headers = new RecordHeaders();
                bob.headers().forEach(h -> headers.add(h.name(), h.value()));
                keys.deserialize("orders", headers, bob.key());
                SerializationException e = assertThrows(SerializationException.class,
                        () -> values.deserialize("orders", headers, bob.value()));
                assertForgotten(assertInstanceOf(TransitReadException.class, e.getCause()));
                assertTrue(e.getMessage().contains(": subject forgotten"), e.getMessage());
            }
        }
    }

    @Test
    void envelopesUnderKeysWithoutThePrefixAreRefusedBeforeVaultIsAsked() {
        byte[] shared = sealV2("customers", bytes("x"));
        byte[] other = sealV2("payments-" + "a".repeat(32), bytes("y"));
        TransitWriter.Sealed format3 = writer("customers").seal("orders", bytes("k"), bytes("z"), List.of());
        String text = transit.encrypt("customers", bytes("v"), null, null);
        try (TransitReader reader = reader(transit)) {
            List<TransitReader.Outcome> outcomes = reader.readAll(
                    List.of(shared, other, text.getBytes(StandardCharsets.US_ASCII)));
            for (TransitReader.Outcome outcome : outcomes) {
                TransitReadException e = failure(outcome);
                assertEquals(Reason.KEY_MISMATCH, e.reason(), e.getMessage());
                assertTrue(e.getMessage().endsWith("(kafka.transit.subject.keys = \"customers-\")"), e.getMessage());
            }
            assertEquals("the envelope was not sealed under a data subject's key (kafka.transit.subject.keys = "
                    + "\"customers-\")", failure(outcomes.get(1)).getMessage(), "the envelope's key name is not quoted");
            assertEquals(Reason.KEY_MISMATCH, assertThrows(TransitReadException.class,
                    () -> reader.readRecord("orders", format3.key(), format3.value(), format3.headers())).reason());
            assertEquals(List.of(), transit.decryptRequests);
        }
    }

    @Test
    void aCachedDataKeyIsUnwrappedAgainAfterItsMaxAgeSoAForgetReachesARunningReader() {
        byte[] alice = sealV2(ALICE, bytes("A"));
        try (TransitReader reader = reader(transit)) {
            assertArrayEquals(bytes("A"), reader.read(alice));
            now.addAndGet(Duration.ofSeconds(30).toNanos());
            assertArrayEquals(bytes("A"), reader.read(alice));
            assertEquals(1, transit.decryptRequests.size(), "served from the cache");

            now.addAndGet(Duration.ofSeconds(30).toNanos());
            assertArrayEquals(bytes("A"), reader.read(alice));
            assertEquals(2, transit.decryptRequests.size(), "60 s after the unwrap, unwrapped again");

            transit.delete(ALICE);
            now.addAndGet(Duration.ofSeconds(59).toNanos());
            assertArrayEquals(bytes("A"), reader.read(alice), "the forget reaches the reader within the max age...");
            now.addAndGet(Duration.ofSeconds(1).toNanos());
            assertForgotten(assertThrows(TransitReadException.class, () -> reader.read(alice)));
            assertEquals(0, reader.cachedKeys());
        }
    }

    @Test
    void onceVaultSaysASubjectIsForgottenItsOtherCachedDataKeysGoToo() {
        byte[] first = sealV2(ALICE, bytes("1"));
        byte[] second = sealV2(ALICE, bytes("2")); // another data key of the same subject
        byte[] carol = sealV2(CAROL, bytes("C"));
        try (TransitReader reader = reader(transit)) {
            reader.readAll(List.of(first, carol));
            assertEquals(2, reader.cachedKeys());
            transit.delete(ALICE);
            List<TransitReader.Outcome> outcomes = reader.readAll(List.of(first, second, carol));
            assertForgotten(failure(outcomes.get(0)));
            assertForgotten(failure(outcomes.get(1)));
            assertArrayEquals(bytes("C"), outcomes.get(2).plaintext());
            assertForgotten(assertThrows(TransitReadException.class, () -> reader.read(first)));
            assertEquals(1, reader.cachedKeys(), "only the other subject's key is left");
        }
    }

    @Test
    void theCacheDropsAndWipesKeysOlderThanItsMaxAge() {
        DataKeyCache cache = new DataKeyCache(10, Duration.ofSeconds(60), now::get);
        byte[] old = {1, 2, 3};
        cache.put(new DataKeyCache.Slot("k", "a"), old);
        now.addAndGet(Duration.ofSeconds(40).toNanos());
        byte[] young = {4};
        cache.put(new DataKeyCache.Slot("k", "b"), young);
        assertArrayEquals(new byte[] {1, 2, 3}, cache.get(new DataKeyCache.Slot("k", "a")));
        now.addAndGet(Duration.ofSeconds(20).toNanos());
        // Using a key does not make it younger: the age counts from the unwrap.
        assertNull(cache.get(new DataKeyCache.Slot("k", "a")));
        assertArrayEquals(new byte[3], old, "wiped when it expired");
        assertArrayEquals(new byte[] {4}, cache.get(new DataKeyCache.Slot("k", "b")));
        now.addAndGet(Duration.ofSeconds(40).toNanos());
        // Not looked up again, still wiped by the next use's sweep.
        cache.get(new DataKeyCache.Slot("k", "other"));
        assertArrayEquals(new byte[1], young);
        assertEquals(0, cache.size());
        assertEquals("the data key cache's max age must be positive", assertThrows(IllegalArgumentException.class,
                () -> new DataKeyCache(10, Duration.ZERO, now::get)).getMessage());
    }

    @Test
    void theSettingsAreReadFromConsumerPropertiesAndChecked() {
        Map<String, Object> properties = new HashMap<>();
        properties.put(TransitConfig.ADDRESS, "http://127.0.0.1:8200");
        TransitConfig plain = TransitConfig.from(properties);
        assertNull(plain.subjectKeys());
        assertEquals(Duration.ofSeconds(60), plain.cacheMaxAge());

        properties.put("kafka.transit.subject.keys", "customers-");
        properties.put("kafka.transit.data.key.cache.max.age.ms", "5000");
        TransitConfig subjects = TransitConfig.from(properties);
        assertEquals("customers-", subjects.subjectKeys());
        assertEquals(Duration.ofSeconds(5), subjects.cacheMaxAge());
        try (var values = new KafkaTransitDeserializer<byte[]>()) {
            values.configure(properties, false);
        }

        properties.put("kafka.transit.vault.key", "customers");
        assertTrue(assertThrows(ConfigException.class, () -> TransitConfig.from(properties)).getMessage()
                .contains("not taken with kafka.transit.vault.key"));
        properties.remove("kafka.transit.vault.key");
        for (String prefix : new String[] {"a/b-", "p".repeat(230), "customers "}) {
            properties.put("kafka.transit.subject.keys", prefix);
            assertTrue(assertThrows(ConfigException.class, () -> TransitConfig.from(properties)).getMessage()
                    .contains("not the prefix of transit key names"), prefix);
        }
        properties.put("kafka.transit.subject.keys", "customers-");
        properties.put("kafka.transit.data.key.cache.max.age.ms", "0");
        assertThrows(ConfigException.class, () -> TransitConfig.from(properties));
        assertThrows(ConfigException.class, () -> new TransitReader(transit, "customers", PREFIX, 10,
                Duration.ofSeconds(1), RecordOptions.DEFAULT));
    }

    /**
     * Through {@link VaultTransit} against an HTTP stand-in that answers as Vault and OpenBao do:
     * {@code transit/decrypt} of a deleted key is HTTP 400 {@code {"errors":["encryption key not found"]}}
     * for the whole request (vault-dev/src/transit.rs mimics it).
     */
    @Test
    void vaultsAnswerForADeletedKeyIsReadAsAForgottenSubject() throws IOException {
        byte[] alice = sealV2(ALICE, bytes("A"));
        byte[] bob = sealV2(BOB, bytes("B"));
        transit.delete(BOB);
        List<String> paths = new ArrayList<>();
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/", exchange -> {
            String path = exchange.getRequestURI().getPath();
            paths.add(path);
            String name = path.substring(path.lastIndexOf('/') + 1);
            String answer;
            int status;
            if (name.equals("permission")) {
                status = 403;
                answer = "{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"]}";
            } else if (transit.deleted(name)) {
                status = 400;
                answer = "{\"errors\":[\"encryption key not found\"]}";
            } else {
                Map<?, ?> body = (Map<?, ?>) Json.parse(new String(exchange.getRequestBody().readAllBytes(),
                        StandardCharsets.UTF_8));
                List<String> ciphertexts = ((List<?>) body.get("batch_input")).stream()
                        .map(i -> (String) ((Map<?, ?>) i).get("ciphertext")).toList();
                List<String> results = transit.decrypt(name, ciphertexts).stream().map(d -> d instanceof
                        Decryption.Plaintext p ? "{\"plaintext\":\"" + Base64.getEncoder().encodeToString(p.bytes())
                        + "\"}" : "{\"error\":" + Json.quote(((Decryption.Failed) d).message()) + ",\"plaintext\":\"\"}")
                        .toList();
                status = 200;
                answer = "{\"data\":{\"batch_results\":[" + String.join(",", results) + "]}}";
            }
            byte[] out = answer.getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(status, out.length);
            try (OutputStream stream = exchange.getResponseBody()) {
                stream.write(out);
            }
        });
        server.start();
        try {
            VaultTransit vault = new VaultTransit(URI.create("http://127.0.0.1:" + server.getAddress().getPort()),
                    "transit", () -> "s.reader-token", null, null, Duration.ofSeconds(5));
            List<Decryption> failed = vault.decrypt(BOB, List.of("vault:v1:AAAA", "vault:v1:BBBB"));
            assertEquals(2, failed.size(), "one result per item, though Vault failed the request");
            assertTrue(failed.stream().allMatch(d -> d instanceof Decryption.Failed f && f.keyNotFound()));
            // Any other refusal is still Vault refusing the reader, not an answer about records.
            assertEquals(Reason.VAULT, assertThrows(TransitReadException.class,
                    () -> vault.decrypt("permission", List.of("vault:v1:AAAA"))).reason());

            try (TransitReader reader = reader(vault)) {
                List<TransitReader.Outcome> outcomes = reader.readAll(List.of(alice, bob));
                assertArrayEquals(bytes("A"), outcomes.get(0).plaintext());
                assertForgotten(failure(outcomes.get(1)));
            }
            // Without subject keys a missing key is an ordinary Vault failure.
            try (TransitReader reader = new TransitReader(vault, null, 10)) {
                TransitReadException e = assertThrows(TransitReadException.class, () -> reader.read(bob));
                assertEquals(Reason.VAULT, e.reason());
                assertEquals("the envelope's data key could not be unwrapped by Vault: encryption key not found",
                        e.getMessage());
            }
            assertTrue(paths.contains("/v1/transit/decrypt/" + BOB), paths.toString());
        } finally {
            server.stop(0);
        }
    }
}
