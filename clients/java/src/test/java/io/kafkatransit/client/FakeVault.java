package io.kafkatransit.client;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Stands in for transit/decrypt in unit tests of the format and cache layers (Vault
 * itself is exercised against OpenBao in .ci/e2e/readers.sh): knows some ciphertexts' plaintexts.
 */
final class FakeVault implements TransitDecrypter {
    final Map<String, byte[]> plaintexts = new HashMap<>();
    final List<List<String>> requests = new ArrayList<>();
    RuntimeException down;

    FakeVault knows(String ciphertext, byte[] plaintext) {
        plaintexts.put(ciphertext, plaintext);
        return this;
    }

    @Override
    public List<Decryption> decrypt(String keyName, List<String> ciphertexts) {
        requests.add(List.copyOf(ciphertexts));
        if (down != null) {
            throw down;
        }
        return ciphertexts.stream().map(c -> plaintexts.containsKey(c)
                ? (Decryption) new Decryption.Plaintext(plaintexts.get(c).clone())
                : new Decryption.Failed("cipher: message authentication failed")).toList();
    }
}
