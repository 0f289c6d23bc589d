package io.kafkatransit.client;

import java.util.HashMap;
import java.util.Map;

import io.kafkatransit.client.schema.RegisteredSchema;
import io.kafkatransit.client.schema.SchemaFieldsException;
import io.kafkatransit.client.schema.SchemaSource;

/** Registries in a map, for the schema'd-record reader's tests. */
final class SchemaFieldsTestSupport {
    private SchemaFieldsTestSupport() {
    }

    static SchemaSource source(Object... idsAndSchemas) {
        Map<Integer, RegisteredSchema> schemas = new HashMap<>();
        for (int i = 0; i < idsAndSchemas.length; i += 2) {
            schemas.put((Integer) idsAndSchemas[i], (RegisteredSchema) idsAndSchemas[i + 1]);
        }
        return id -> {
            RegisteredSchema schema = schemas.get(id);
            if (schema == null) {
                throw new SchemaFieldsException(SchemaFieldsException.Reason.UNKNOWN_SCHEMA, "no schema with id " + id);
            }
            return schema;
        };
    }
}
