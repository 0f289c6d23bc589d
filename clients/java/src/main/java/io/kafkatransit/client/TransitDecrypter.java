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

    /** A ciphertext with its derivation context and associated data (null: none). */
    record Item(String ciphertext, byte[] context, byte[] associatedData) {
    }

    /**
     * Decrypts each item with its context and associated data: what format 3 needs (bound
     * {@code vault:} values and fields, encrypted record keys). {@link VaultTransit} does;
     * a decrypter that cannot refuses with {@link TransitReadException.Reason#CONFIG}.
     */
    default List<Decryption> decryptItems(String keyName, List<Item> items) {
        if (items.stream().allMatch(i -> i.context() == null && i.associatedData() == null)) {
            return decrypt(keyName, items.stream().map(Item::ciphertext).toList());
        }
        throw new TransitReadException(TransitReadException.Reason.CONFIG,
                "this TransitDecrypter passes no context or associated data, which format 3 records need");
    }
}
