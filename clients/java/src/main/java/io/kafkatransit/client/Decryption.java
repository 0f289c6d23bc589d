package io.kafkatransit.client;

/** The outcome of decrypting one Vault ciphertext text: its plaintext bytes, or Vault's error. */
public sealed interface Decryption {
    /**
     * Vault's (and OpenBao's) error when the transit key does not exist, e.g. deleted by
     * {@code kafka-transit forget}: {@code transit/decrypt/<name>} answers HTTP 400
     * {@code {"errors":["encryption key not found"]}}. {@link VaultTransit} gives it as each
     * item's {@link Failed} message; another {@link TransitDecrypter} should do the same.
     */
    String KEY_NOT_FOUND = "encryption key not found";

    /** Vault's base64 {@code plaintext}, decoded. */
    record Plaintext(byte[] bytes) implements Decryption {
        @Override
        public String toString() {
            return "Plaintext[" + bytes.length + " bytes]";
        }
    }

    /** Vault's message for this item (e.g. "cipher: message authentication failed"). */
    record Failed(String message) implements Decryption {
        /** Whether Vault has no such transit key ({@link #KEY_NOT_FOUND}). */
        public boolean keyNotFound() {
            return message != null && message.contains(KEY_NOT_FOUND);
        }
    }
}
