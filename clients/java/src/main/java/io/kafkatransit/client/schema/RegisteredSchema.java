package io.kafkatransit.client.schema;

import java.util.List;

/**
 * A schema as a Confluent-compatible registry returns it, with every schema it references
 * (directly or not), each under the name the referencing schema uses: an Avro full name, a
 * {@code .proto} import path, a JSON Schema {@code $ref} URL.
 *
 * @param references in an order where each comes after those it references
 */
public record RegisteredSchema(Type type, String text, List<Reference> references) {
    public enum Type { AVRO, PROTOBUF, JSON }

    /** A referenced schema: its name, its text, and the names it references itself. */
    public record Reference(String name, String text, List<String> references) {
        public Reference(String name, String text) {
            this(name, text, List.of());
        }
    }

    public RegisteredSchema {
        references = List.copyOf(references);
    }

    public RegisteredSchema(Type type, String text) {
        this(type, text, List.of());
    }
}
