package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import java.util.List;

import org.junit.jupiter.api.Test;

import io.kafkatransit.client.TransitReadException.Reason;

class TransitReaderTest {
    private static final Vectors.Sealed HELLO = Vectors.sealed().get(0);
    private static final Vectors.Sealed JSON = Vectors.sealed().get(2);
    private static final String TEXT = "vault:v1:c2VjcmV0";

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static FakeVault vault() {
        return new FakeVault().knows(HELLO.wrappedKey(), HELLO.dataKey()).knows(JSON.wrappedKey(), JSON.dataKey())
                .knows(TEXT, bytes("secret"));
    }

    @Test
    void aDataKeyIsUnwrappedOnceThenServedFromTheCache() {
        FakeVault vault = vault();
        try (TransitReader reader = new TransitReader(vault, null, 10)) {
            for (int i = 0; i < 5; i++) {
                assertArrayEquals(HELLO.plaintext(), reader.read(HELLO.envelope()));
            }
            assertEquals(1, vault.requests.size());
            assertEquals(1, reader.cachedKeys());
        }
    }

    @Test
    void aBatchAsksVaultOncePerTransitKeyForEveryMissingDataKeyAndValue() {
        FakeVault vault = vault();
        try (TransitReader reader = new TransitReader(vault, null, 10)) {
            List<TransitReader.Outcome> outcomes = reader.readAll(
                    List.of(HELLO.envelope(), JSON.envelope(), HELLO.envelope(), bytes("{\"plain\":1}")));
            assertArrayEquals(HELLO.plaintext(), outcomes.get(0).plaintext());
            assertArrayEquals(JSON.plaintext(), outcomes.get(1).plaintext());
            assertArrayEquals(HELLO.plaintext(), outcomes.get(2).plaintext());
            assertEquals(Reason.FORMAT, ((TransitReader.Outcome.Failed) outcomes.get(3)).error().reason());
            // two key names (customers, team.tenant-a): two requests, each wrapped key asked once
            assertEquals(List.of(List.of(HELLO.wrappedKey()), List.of(JSON.wrappedKey())), vault.requests);
        }
    }

    @Test
    void vaultTextValuesAreDecryptedWithTheConfiguredKeyInOneBatch() {
        FakeVault vault = vault().knows("vault:v1:b3RoZXI=", bytes("other"));
        try (TransitReader reader = new TransitReader(vault, "customers", 10)) {
            List<TransitReader.Outcome> outcomes = reader.readAll(
                    List.of(bytes(TEXT), bytes("vault:v1:b3RoZXI="), HELLO.envelope(), bytes("vault:v1:forged")));
            assertArrayEquals(bytes("secret"), outcomes.get(0).plaintext());
            assertArrayEquals(bytes("other"), outcomes.get(1).plaintext());
            assertArrayEquals(HELLO.plaintext(), outcomes.get(2).plaintext());
            TransitReadException forged = assertThrows(TransitReadException.class, outcomes.get(3)::plaintext);
            assertEquals(Reason.VAULT, forged.reason());
            assertEquals(1, vault.requests.size());
            assertArrayEquals(bytes("secret"), reader.decryptValue(TEXT));
        }
    }

    @Test
    void anEnvelopeUnderAnotherKeyThanConfiguredIsRefusedWithoutAskingVault() {
        FakeVault vault = vault();
        try (TransitReader reader = new TransitReader(vault, "payments", 10)) {
            TransitReadException error = assertThrows(TransitReadException.class, () -> reader.read(HELLO.envelope()));
            assertEquals(Reason.KEY_MISMATCH, error.reason());
            assertEquals(0, vault.requests.size());
            // The envelope's key name ("customers") is record data: logs do not get it.
            assertEquals("envelope was sealed with another Vault key than this reader's: it opens \"payments\"",
                    error.getMessage());
        }
    }

    @Test
    void aVaultTextNeedsAConfiguredKey() {
        try (TransitReader reader = new TransitReader(vault(), null, 10)) {
            assertEquals(Reason.CONFIG,
                    assertThrows(TransitReadException.class, () -> reader.read(bytes(TEXT))).reason());
        }
    }

    @Test
    void vaultDownOrRefusingFailsTheValuesAndCachesNothing() {
        FakeVault vault = vault();
        vault.down = new TransitReadException(Reason.VAULT, "Vault at http://127.0.0.1:1 is unreachable");
        try (TransitReader reader = new TransitReader(vault, null, 10)) {
            TransitReadException error = assertThrows(TransitReadException.class, () -> reader.read(HELLO.envelope()));
            assertEquals(Reason.VAULT, error.reason());
            assertEquals(0, reader.cachedKeys());
            vault.down = null;
            assertArrayEquals(HELLO.plaintext(), reader.read(HELLO.envelope()));
        }
        try (TransitReader reader = new TransitReader(new FakeVault(), null, 10)) {
            TransitReadException error = assertThrows(TransitReadException.class, () -> reader.read(HELLO.envelope()));
            assertEquals(Reason.VAULT, error.reason());
            assertEquals("the envelope's data key could not be unwrapped by Vault: cipher: message authentication failed",
                    error.getMessage());
        }
    }

    @Test
    void aWrongSizedDataKeyIsRefused() {
        FakeVault vault = new FakeVault().knows(HELLO.wrappedKey(), new byte[16]);
        try (TransitReader reader = new TransitReader(vault, null, 10)) {
            assertEquals(Reason.VAULT,
                    assertThrows(TransitReadException.class, () -> reader.read(HELLO.envelope())).reason());
        }
    }

    @Test
    void theCacheIsBoundedAndWipesWhatItEvicts() {
        DataKeyCache cache = new DataKeyCache(2);
        byte[] first = {1, 2, 3};
        cache.put(new DataKeyCache.Slot("k", "a"), first);
        cache.put(new DataKeyCache.Slot("k", "b"), new byte[] {4});
        cache.get(new DataKeyCache.Slot("k", "a")); // a is now the most recently used
        byte[] third = {5};
        cache.put(new DataKeyCache.Slot("k", "c"), third);
        assertEquals(2, cache.size());
        assertNull(cache.get(new DataKeyCache.Slot("k", "b")));
        assertArrayEquals(new byte[] {1, 2, 3}, cache.get(new DataKeyCache.Slot("k", "a")));
        cache.clear();
        assertArrayEquals(new byte[3], first);
        assertArrayEquals(new byte[1], third);
    }

    @Test
    void outcomesAndEnvelopesDoNotPrintPlaintext() {
        assertInstanceOf(TransitReader.Outcome.Read.class, new TransitReader.Outcome.Read(bytes("secret")));
        assertEquals("Read[6 bytes]", new TransitReader.Outcome.Read(bytes("secret")).toString());
        assertEquals("Plaintext[6 bytes]", new Decryption.Plaintext(bytes("secret")).toString());
    }
}
