package io.kafkatransit.client.schema;

import java.util.List;
import java.util.Objects;

import io.kafkatransit.client.RecordOptions;

/**
 * How protected fields are found and opened: the same settings as the runner's
 * {@code encrypt-schema-fields} ({@code tags}, {@code fields}, {@code deterministic},
 * {@code context}, {@code context_from}), and how format 3 records are read
 * ({@code stream}, {@code require_binding}, {@code record_keys_key}: the same
 * {@link RecordOptions} as {@code KafkaTransitDeserializer}'s; {@code keep_hmac_keys}).
 *
 * @param key the transit key; null: the key each record names in its {@code kafka-transit.key} header
 * @param tags schema tags that select a field (default {@code PII})
 * @param fields field paths that select a field ({@code /customer/ssn}, {@code /phones/*}{@code /number})
 * @param deterministic each field's located path is its derivation context
 * @param context a fixed derivation context (derived keys), or null
 * @param contextFromRecordKey the record key is the derivation context
 * @param records format 3: the stream fields are bound to (null: the topic read), the binding
 *     a record must have, the transit key of encrypted record keys
 * @param keepHmacKeys format 3: pass HMAC'd record keys ({@code record_keys = "hmac"}) on as they
 *     are on the sink; by default such a record is refused ({@link SchemaFieldsException.Reason#HMAC_KEY}),
 *     since its source key cannot be restored (the policies' {@code keep_hmac_keys})
 */
public record SchemaFieldsOptions(String key, List<String> tags, List<String> fields, boolean deterministic,
                                  String context, boolean contextFromRecordKey, RecordOptions records,
                                  boolean keepHmacKeys) {
    public SchemaFieldsOptions {
        tags = List.copyOf(tags);
        fields = List.copyOf(fields);
        Objects.requireNonNull(records, "records");
        if (tags.isEmpty() && fields.isEmpty()) {
            throw new IllegalArgumentException("no tags and no field paths: no field would be opened");
        }
        if (deterministic && (context != null || contextFromRecordKey)) {
            throw new IllegalArgumentException("deterministic makes each field's path its derivation context: "
                    + "set no context");
        }
        if (context != null && contextFromRecordKey) {
            throw new IllegalArgumentException("a fixed context and the record key as context exclude each other");
        }
        if (deterministic && !records.requireBinding().isEmpty()) {
            // Writers never bind deterministic fields (one convergent nonce under different
            // associated data would give away GCM's authentication key): such a reader would
            // refuse every record.
            throw new IllegalArgumentException("deterministic fields are never bound to their stream or key: "
                    + "require no binding (" + RecordOptions.REQUIRE_BINDING + ")");
        }
    }

    /** Format 2 and format 3 records read with the default {@link RecordOptions} (no binding required). */
    public SchemaFieldsOptions(String key, List<String> tags, List<String> fields, boolean deterministic,
                               String context, boolean contextFromRecordKey) {
        this(key, tags, fields, deterministic, context, contextFromRecordKey, RecordOptions.DEFAULT, false);
    }

    /** Fields tagged PII, under {@code key}. */
    public static SchemaFieldsOptions tagged(String key, String... tags) {
        return new SchemaFieldsOptions(key, tags.length == 0 ? List.of("PII") : List.of(tags), List.of(), false,
                null, false);
    }

    public SchemaFieldsOptions withFields(String... paths) {
        return new SchemaFieldsOptions(key, tags, List.of(paths), deterministic, context, contextFromRecordKey,
                records, keepHmacKeys);
    }

    public SchemaFieldsOptions deterministic(boolean on) {
        return new SchemaFieldsOptions(key, tags, fields, on, context, contextFromRecordKey, records, keepHmacKeys);
    }

    public SchemaFieldsOptions withContext(String fixed) {
        return new SchemaFieldsOptions(key, tags, fields, deterministic, fixed, false, records, keepHmacKeys);
    }

    public SchemaFieldsOptions withRecordKeyContext() {
        return new SchemaFieldsOptions(key, tags, fields, deterministic, null, true, records, keepHmacKeys);
    }

    /** These options reading format 3 records as {@code records} says. */
    public SchemaFieldsOptions withRecords(RecordOptions records) {
        return new SchemaFieldsOptions(key, tags, fields, deterministic, context, contextFromRecordKey, records,
                keepHmacKeys);
    }

    /** These options passing HMAC'd record keys on ({@code true}) or refusing their records. */
    public SchemaFieldsOptions keepHmacKeys(boolean on) {
        return new SchemaFieldsOptions(key, tags, fields, deterministic, context, contextFromRecordKey, records, on);
    }
}
