package io.kafkatransit.client;

/** The outcome of decrypting one Vault ciphertext text: its plaintext bytes, or Vault's error. */
public sealed interface Decryption {
    /** Vault's base64 {@code plaintext}, decoded. */
    record Plaintext(byte[] bytes) implements Decryption {
        @Override
        public String toString() {
            return "Plaintext[" + bytes.length + " bytes]";
        }
    }

    /** Vault's message for this item (e.g. "cipher: message authentication failed"). */
    record Failed(String message) implements Decryption {
    }
}
