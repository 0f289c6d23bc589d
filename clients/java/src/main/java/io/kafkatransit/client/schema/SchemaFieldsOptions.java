package io.kafkatransit.client.schema;

import java.util.List;

/**
 * How protected fields are found and opened: the same settings as the runner's
 * {@code encrypt-schema-fields} ({@code tags}, {@code fields}, {@code deterministic},
 * {@code context}, {@code context_from}).
 *
 * @param key the transit key; null: the key each record names in its {@code kafka-transit.key} header
 * @param tags schema tags that select a field (default {@code PII})
 * @param fields field paths that select a field ({@code /customer/ssn}, {@code /phones/*}{@code /number})
 * @param deterministic each field's located path is its derivation context
 * @param context a fixed derivation context (derived keys), or null
 * @param contextFromRecordKey the record key is the derivation context
 */
public record SchemaFieldsOptions(String key, List<String> tags, List<String> fields, boolean deterministic,
                                  String context, boolean contextFromRecordKey) {
    public SchemaFieldsOptions {
        tags = List.copyOf(tags);
        fields = List.copyOf(fields);
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
    }

    /** Fields tagged PII, under {@code key}. */
    public static SchemaFieldsOptions tagged(String key, String... tags) {
        return new SchemaFieldsOptions(key, tags.length == 0 ? List.of("PII") : List.of(tags), List.of(), false,
                null, false);
    }

    public SchemaFieldsOptions withFields(String... paths) {
        return new SchemaFieldsOptions(key, tags, List.of(paths), deterministic, context, contextFromRecordKey);
    }

    public SchemaFieldsOptions deterministic(boolean on) {
        return new SchemaFieldsOptions(key, tags, fields, on, context, contextFromRecordKey);
    }

    public SchemaFieldsOptions withContext(String fixed) {
        return new SchemaFieldsOptions(key, tags, fields, deterministic, fixed, false);
    }

    public SchemaFieldsOptions withRecordKeyContext() {
        return new SchemaFieldsOptions(key, tags, fields, deterministic, null, true);
    }
}
