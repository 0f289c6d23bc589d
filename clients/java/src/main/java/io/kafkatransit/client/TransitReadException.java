package io.kafkatransit.client;

/**
 * A value that could not be read: it is not protected, it was tampered with, or Vault
 * would not (or could not) decrypt it. Never carries plaintext, data keys or tokens.
 */
public final class TransitReadException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** What went wrong, for callers that react differently (skip, retry, alert). */
    public enum Reason {
        /** Neither a kafka-transit envelope (first byte {@code 0x01}) nor a {@code vault:v} text. */
        FORMAT,
        /** An envelope whose lengths run past its end, or too short to hold a nonce and a tag. */
        TRUNCATED,
        /** The AES-GCM tag check failed: a changed byte, header or associated data, or the wrong key. */
        AUTHENTICATION,
        /**
         * The envelope's key name is not a transit key name (1 to 249 of {@code A-Z a-z 0-9 . _ -},
         * not {@code .} or {@code ..}), so it is not put in a Vault request path.
         */
        KEY_NAME,
        /** The envelope names a transit key other than the one this reader is configured for. */
        KEY_MISMATCH,
        /** Vault refused to decrypt (wrong key, edited ciphertext) or could not be reached. */
        VAULT,
        /** The reader is missing a setting it needs for this value. */
        CONFIG
    }

    private final Reason reason;

    public TransitReadException(Reason reason, String message) {
        this(reason, message, null);
    }

    public TransitReadException(Reason reason, String message, Throwable cause) {
        super(message, cause);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}
