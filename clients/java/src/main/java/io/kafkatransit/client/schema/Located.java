package io.kafkatransit.client.schema;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.Function;

/** The selected fields of one decoded record, and how to put their plaintexts in. */
final class Located {
    /**
     * One selected field present in the record.
     *
     * @param path its located path ({@code /phones/1/number}): record data, never in a message
     * @param schemaPath its schema path ({@code /phones/*}{@code /number}), for messages
     * @param bytes a bytes field (else a string field)
     * @param content what the field holds (a ciphertext's text, or anything a writer put there)
     */
    record Found(String path, String schemaPath, boolean bytes, byte[] content) {
    }

    final List<Found> fields = new ArrayList<>();
    private final List<Consumer<byte[]>> setters = new ArrayList<>();
    private Object value;
    private Function<List<byte[]>, Object> rebuild;

    Located(Object value) {
        this.value = value;
    }

    /** A field whose plaintext {@code setter} puts in place (Avro, JSON: mutable records). */
    void add(Found found, Consumer<byte[]> setter) {
        fields.add(found);
        setters.add(setter);
    }

    /** For immutable records (Protobuf): the record built again from the plaintexts, in order. */
    void rebuildWith(Function<List<byte[]>, Object> rebuild) {
        this.rebuild = rebuild;
    }

    Object value() {
        return value;
    }

    /** The record with each field's plaintext in place, in the order of {@link #fields}. */
    Object finish(List<byte[]> plaintexts) {
        if (rebuild != null) {
            value = rebuild.apply(plaintexts);
        } else {
            for (int i = 0; i < setters.size(); i++) {
                setters.get(i).accept(plaintexts.get(i));
            }
        }
        return value;
    }
}
