package io.kafkatransit.client;

import java.util.List;

/**
 * Vault's {@code transit/decrypt}: the one Vault operation a reader needs, both to unwrap
 * envelope data keys and to decrypt {@code vault:vN:} values. {@link VaultTransit} is the
 * HTTP implementation; tests inject their own.
 */
@FunctionalInterface
public interface TransitDecrypter {
    /**
     * Decrypts each ciphertext text with transit key {@code keyName}, in as few requests as
     * the implementation can ({@code batch_input}). Returns one result per input, in order.
     *
     * @throws TransitReadException with {@link TransitReadException.Reason#VAULT} when Vault
     *     cannot be asked at all (unreachable, sealed, permission denied)
     */
    List<Decryption> decrypt(String keyName, List<String> ciphertexts);
}
