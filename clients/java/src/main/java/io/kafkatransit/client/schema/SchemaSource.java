package io.kafkatransit.client.schema;

/** Where writer schemas come from: {@link SchemaRegistry}, or a map in tests. */
@FunctionalInterface
public interface SchemaSource {
    /**
     * The schema registered under {@code id}, its references resolved.
     *
     * @throws SchemaFieldsException {@code UNKNOWN_SCHEMA} when there is none, {@code REGISTRY}
     *     when it cannot be asked
     */
    RegisteredSchema schema(int id);
}
