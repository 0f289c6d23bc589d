package io.kafkatransit.client.schema;

/** One schema id's schema, parsed for a selection once, ready to open records. */
abstract class ParsedSchema {
    abstract RegisteredSchema.Type type();

    /**
     * Decodes a record's body (after the header and, for Protobuf, the message indexes) and
     * finds its selected fields.
     *
     * @throws SchemaFieldsException {@code DECODE} when it does not decode
     */
    abstract Located locate(byte[] body, int[] messageIndexes);

    /** The body of {@code value} encoded under this schema (Avro binary, Protobuf, JSON text). */
    abstract byte[] encode(Object value);

    static SchemaFieldsException schemaError(String message) {
        return new SchemaFieldsException(SchemaFieldsException.Reason.SCHEMA, message);
    }

    static SchemaFieldsException schemaError(String message, Throwable cause) {
        return new SchemaFieldsException(SchemaFieldsException.Reason.SCHEMA, message, cause);
    }

    static SchemaFieldsException decodeError(String message) {
        return new SchemaFieldsException(SchemaFieldsException.Reason.DECODE, message);
    }

    static SchemaFieldsException decodeError(String message, Throwable cause) {
        return new SchemaFieldsException(SchemaFieldsException.Reason.DECODE, message, cause);
    }
}
