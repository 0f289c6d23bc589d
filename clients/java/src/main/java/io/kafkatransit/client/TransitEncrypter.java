package io.kafkatransit.client;

/**
 * What a writer asks Vault: data keys ({@code datakey/plaintext}), encryption of record
 * keys (convergent, with the stream as context) and HMAC. {@link VaultTransit} implements it;
 * tests inject their own.
 */
public interface TransitEncrypter {
    /** A fresh 256-bit data key (the caller wipes it) and Vault's wrapping of it. */
    record DataKey(byte[] plaintext, String wrapped) {
        @Override
        public String toString() {
            return "DataKey[wrapped=" + wrapped + "]";
        }
    }

    DataKey dataKey(String keyName);

    /** {@code encrypt} with an optional context (derived keys) and associated data (null: none). */
    String encrypt(String keyName, byte[] plaintext, byte[] context, byte[] associatedData);

    /** Vault's HMAC of {@code input}: {@code vault:vN:...}. */
    String hmac(String keyName, byte[] input);
}
