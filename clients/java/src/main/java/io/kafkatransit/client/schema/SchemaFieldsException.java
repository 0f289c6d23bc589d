package io.kafkatransit.client.schema;

/**
 * A schema'd record whose protected fields could not be opened. Never carries a field's
 * value, plaintext or ciphertext, nor a map key or array index of the record (located
 * paths are record data): messages name the schema id and schema paths
 * ({@code /phones/*}{@code /number}).
 */
public final class SchemaFieldsException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** What went wrong, for callers that react differently (skip, retry, alert). */
    public enum Reason {
        /** Not in Confluent's wire format: shorter than 5 bytes, or a magic byte that is not 0. */
        FORMAT,
        /** A schema id the registry does not have. */
        UNKNOWN_SCHEMA,
        /** The registry is unreachable, failing (5xx, 429), refusing the credentials or answering nonsense: retry. */
        REGISTRY,
        /** The schema cannot be used: it does not parse, or it selects a field that is neither string nor bytes. */
        SCHEMA,
        /** The record does not decode under its schema (truncated, trailing bytes, bad message indexes...). */
        DECODE,
        /** A field the schema selects does not hold a Vault transit ciphertext ({@code vault:v<N>:...}). */
        NOT_CIPHERTEXT,
        /** Vault refused to decrypt a field (wrong key or context, edited ciphertext) or could not be asked. */
        VAULT,
        /** A string field decrypted to bytes that are not UTF-8. */
        PLAINTEXT,
        /** The transit key named by the record is not a transit key name. */
        KEY_NAME,
        /** The record names another transit key than the one this reader is configured for. */
        KEY_MISMATCH,
        /** The record was protected by another policy ({@code kafka-transit.policy} header). */
        POLICY,
        /** The reader lacks a setting this record needs (a transit key, a record key for the context). */
        CONFIG,
        /**
         * Format 3: the {@code kafka-transit.protection} header is malformed, repeated or of
         * unknown flags, or has flags a field record never carries (sealed headers, padding,
         * compression).
         */
        FLAGS,
        /** The record is not bound to its stream or key as this reader requires (or has no protection header). */
        UNBOUND,
        /**
         * Format 3: Vault refused a field as "message authentication failed": its ciphertext was
         * written for another place in a record, another record key or another stream (or edited).
         */
        AUTHENTICATION,
        /**
         * Format 3: the record key is an HMAC ({@code record_keys = "hmac"}), which cannot be
         * restored, and the reader does not keep such keys ({@code kafka.transit.keep.hmac.keys}).
         */
        HMAC_KEY
    }

    private final Reason reason;

    public SchemaFieldsException(Reason reason, String message) {
        this(reason, message, null);
    }

    public SchemaFieldsException(Reason reason, String message, Throwable cause) {
        super(message, cause);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}
