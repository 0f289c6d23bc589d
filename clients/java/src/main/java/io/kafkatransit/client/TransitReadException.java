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
        /**
         * The envelope names a transit key other than the one this reader is configured for,
         * or, with subject keys ({@value TransitConfig#SUBJECT_KEYS}), a key without their prefix.
         */
        KEY_MISMATCH,
        /** Vault refused to decrypt (wrong key, edited ciphertext) or could not be reached. */
        VAULT,
        /** The reader is missing a setting it needs for this value. */
        CONFIG,
        /**
         * Format 3: the {@code kafka-transit.protection} header is missing, malformed or of
         * unknown flags, or its flags differ from the envelope's (a stripped or edited header).
         */
        FLAGS,
        /** Format 3: the data key is not the one the envelope commits to (a swapped wrapped key). */
        COMMITMENT,
        /** Format 3: padding that is not zeros, or a length past the end. */
        PADDING,
        /** Format 3: the body is not a valid zstd or LZ4 frame. */
        DECOMPRESSION,
        /** Format 3: the body decompresses to more than the reader's limit. */
        TOO_LARGE,
        /** Format 3: the sealed headers' frame is not one. */
        FRAME,
        /** The record is not bound to its stream or key as this reader requires. */
        UNBOUND,
        /**
         * Records sealed per data subject ({@value TransitConfig#SUBJECT_KEYS}): Vault no longer
         * has the transit key of the record's subject ({@code kafka-transit forget} deleted it,
         * docs/forgetting.md), so nobody can open the record. Not worth retrying; the message
         * starts with {@value TransitReadException#FORGOTTEN}.
         */
        SUBJECT_FORGOTTEN
    }

    /**
     * How the message of a {@link Reason#SUBJECT_FORGOTTEN} failure starts, the same words as
     * the runner's dead-letter reason and the Go and Python readers' errors, so that one
     * search finds them all.
     */
    public static final String FORGOTTEN = "subject forgotten";

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
