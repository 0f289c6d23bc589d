package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import org.junit.jupiter.api.Test;

import io.kafkatransit.client.TransitReadException.Reason;

class EnvelopeVectorsTest {
    private static final Map<String, Reason> EXPECTED = Map.of(
            "version", Reason.FORMAT, "truncated", Reason.TRUNCATED, "authentication", Reason.AUTHENTICATION,
            "key name", Reason.KEY_NAME);

    @Test
    void everyPublishedVectorOpensToItsPlaintext() {
        assertEquals(7, Vectors.sealed().size());
        assertEquals(Set.of(Envelope.FORMAT_VERSION, Envelope.FORMAT_VERSION_1),
                Vectors.sealed().stream().map(Vectors.Sealed::version).collect(Collectors.toSet()));
        for (Vectors.Sealed vector : Vectors.sealed()) {
            Envelope envelope = Envelope.parse(vector.envelope());
            assertEquals(vector.version(), envelope.version(), vector.name());
            assertEquals(vector.keyName(), envelope.keyName(), vector.name());
            assertEquals(vector.wrappedKey(), envelope.wrappedKey(), vector.name());
            assertArrayEquals(vector.plaintext(), envelope.open(vector.dataKey(), vector.aad()), vector.name());
        }
    }

    @Test
    void everyVectorOpensThroughTheReaderWithItsWrappedKeyUnwrapped() {
        FakeVault vault = new FakeVault();
        Vectors.sealed().forEach(v -> vault.knows(v.wrappedKey(), v.dataKey()));
        try (TransitReader reader = new TransitReader(vault, null, 10)) {
            for (Vectors.Sealed vector : Vectors.sealed()) {
                assertArrayEquals(vector.plaintext(), reader.open(vector.envelope(), vector.aad()), vector.name());
            }
        }
    }

    @Test
    void everyTamperedEnvelopeIsRejectedForItsReasonEvenWithTheRightDataKey() {
        assertTrue(Vectors.tampered().size() >= 10);
        for (Vectors.Tampered t : Vectors.tampered()) {
            TransitReadException error = assertThrows(TransitReadException.class,
                    () -> Envelope.parse(t.envelope()).open(t.dataKey(), t.aad()), t.name());
            assertEquals(EXPECTED.get(t.expect()), error.reason(), t.name() + ": " + error.getMessage());
            assertTrue(!error.getMessage().contains(Vectors.HEX.formatHex(t.dataKey())), "data key in a message");
        }
    }

    @Test
    void everyEnvelopeNamingNoTransitKeyIsRefusedByTheReaderBeforeAskingVault() {
        FakeVault vault = new FakeVault();
        // Vault would unwrap their data keys: only the key name check stands in the way.
        Vectors.sealed().forEach(v -> vault.knows(v.wrappedKey(), v.dataKey()));
        List<Vectors.Tampered> keyNames = Vectors.tampered().stream().filter(t -> t.expect().equals("key name")).toList();
        assertTrue(keyNames.size() >= 5, keyNames.size() + " key name cases");
        try (TransitReader reader = new TransitReader(vault, null, 10)) {
            for (Vectors.Tampered t : keyNames) {
                TransitReadException error = assertThrows(TransitReadException.class,
                        () -> reader.open(t.envelope(), t.aad()), t.name());
                assertEquals(Reason.KEY_NAME, error.reason(), t.name() + ": " + error.getMessage());
            }
        }
        assertEquals(List.of(), vault.requests);
    }
}
