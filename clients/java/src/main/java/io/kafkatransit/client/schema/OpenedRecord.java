package io.kafkatransit.client.schema;

import java.util.Arrays;
import java.util.List;

/**
 * A schema'd record with its protected fields opened: the value as the format's own
 * library represents it ({@code org.apache.avro.generic.GenericRecord} or another Avro datum,
 * {@code com.google.protobuf.DynamicMessage}, {@code com.fasterxml.jackson.databind.JsonNode}),
 * the schema id it was written under and, for Protobuf, its message indexes.
 */
public final class OpenedRecord {
    private final int schemaId;
    private final RegisteredSchema.Type type;
    private final int[] messageIndexes;
    private final byte[] header;
    private final Object value;
    private final int fields;
    private final ParsedSchema schema;

    OpenedRecord(int schemaId, RegisteredSchema.Type type, int[] messageIndexes, byte[] header, Object value,
                 int fields, ParsedSchema schema) {
        this.schemaId = schemaId;
        this.type = type;
        this.messageIndexes = messageIndexes;
        this.header = header;
        this.value = value;
        this.fields = fields;
        this.schema = schema;
    }

    public int schemaId() {
        return schemaId;
    }

    public RegisteredSchema.Type type() {
        return type;
    }

    /** Protobuf: the message indexes as written ({@code []} for the file's first message); empty otherwise. */
    public List<Integer> messageIndexes() {
        return Arrays.stream(messageIndexes).boxed().toList();
    }

    /** The record, its protected fields in the clear. */
    public Object value() {
        return value;
    }

    /** How many fields were opened. */
    public int fields() {
        return fields;
    }

    /**
     * The record encoded again in Confluent's wire format under the same schema id (and the
     * same message index bytes): Avro binary, Protobuf bytes, or JSON text. What a stock
     * Confluent deserializer reads as the unprotected record.
     */
    public byte[] toWireFormat() {
        byte[] body = schema.encode(value);
        byte[] out = Arrays.copyOf(header, header.length + body.length);
        System.arraycopy(body, 0, out, header.length, body.length);
        return out;
    }

    @Override
    public String toString() {
        return "OpenedRecord[schemaId=" + Integer.toUnsignedString(schemaId) + ", " + type + ", " + fields + " fields]";
    }
}
