package io.kafkatransit.client.schema;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import org.apache.avro.AvroRuntimeException;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.util.Utf8;

import io.kafkatransit.client.schema.Selection.Step;

/**
 * Avro records (the binary encoding) read with Apache Avro's {@link GenericDatumReader} into
 * {@link GenericRecord}s (strings as {@link Utf8}, bytes as {@link ByteBuffer}, no logical
 * type conversions). A selected field must be a string, bytes, or a union of null with
 * them; a tagged record, array, map or other type is a schema error, as for the runner.
 */
final class AvroSchema extends ParsedSchema {
    private static final String TAGS = "confluent:tags";
    private final Schema schema;
    private final Selection selection;
    /** The types from which a field carrying a selected tag can be reached. */
    private final Set<Schema> taggedBelow = Collections.newSetFromMap(new IdentityHashMap<>());

    AvroSchema(RegisteredSchema registered, Selection selection) {
        this.selection = selection;
        Schema.Parser parser = new Schema.Parser();
        try {
            for (RegisteredSchema.Reference reference : registered.references()) {
                parser.parse(reference.text());
            }
            this.schema = parser.parse(registered.text());
        } catch (RuntimeException e) {
            throw schemaError("avro schema does not parse: " + e.getMessage(), e);
        }
        markTagged();
        check(schema, new ArrayList<>(), Collections.newSetFromMap(new IdentityHashMap<>()));
    }

    Schema schema() {
        return schema;
    }

    @Override
    RegisteredSchema.Type type() {
        return RegisteredSchema.Type.AVRO;
    }

    private List<String> tags(Schema.Field field) {
        Object tags = field.getObjectProp(TAGS);
        if (tags == null) {
            return List.of();
        }
        if (tags instanceof List<?> list && list.stream().allMatch(t -> t instanceof String)) {
            return list.stream().map(String.class::cast).toList();
        }
        throw schemaError("field " + field.name() + " has a \"confluent:tags\" that is not an array of strings");
    }

    // ---- the schema, checked once -------------------------------------------------------

    private void markTagged() {
        Map<Schema, List<Schema>> parents = new IdentityHashMap<>();
        List<Schema> all = new ArrayList<>();
        collect(schema, parents, all, null);
        List<Schema> work = new ArrayList<>();
        for (Schema s : all) {
            if (s.getType() == Schema.Type.RECORD
                    && s.getFields().stream().anyMatch(f -> selection.selectingTag(tags(f)) != null)) {
                taggedBelow.add(s);
                work.add(s);
            }
        }
        while (!work.isEmpty()) {
            Schema s = work.remove(work.size() - 1);
            for (Schema parent : parents.getOrDefault(s, List.of())) {
                if (taggedBelow.add(parent)) {
                    work.add(parent);
                }
            }
        }
    }

    private static void collect(Schema s, Map<Schema, List<Schema>> parents, List<Schema> all, Schema parent) {
        boolean seen = parents.containsKey(s);
        List<Schema> mine = parents.computeIfAbsent(s, k -> new ArrayList<>());
        if (parent != null) {
            mine.add(parent);
        }
        if (seen) {
            return;
        }
        all.add(s);
        switch (s.getType()) {
            case RECORD -> s.getFields().forEach(f -> collect(f.schema(), parents, all, s));
            case ARRAY -> collect(s.getElementType(), parents, all, s);
            case MAP -> collect(s.getValueType(), parents, all, s);
            case UNION -> s.getTypes().forEach(b -> collect(b, parents, all, s));
            default -> {
            }
        }
    }

    /** Every selected field is a string or bytes: checked for the whole schema, not per record. */
    private void check(Schema s, List<Step> path, Set<Schema> tagsOnlyDone) {
        boolean byPath = selection.maySelectBelow(path);
        if (!byPath && (!taggedBelow.contains(s) || !tagsOnlyDone.add(s))) {
            return;
        }
        switch (s.getType()) {
            case RECORD -> {
                for (Schema.Field field : s.getFields()) {
                    List<Step> at = Selection.plus(path, Step.field(field.name()));
                    List<String> tags = tags(field);
                    if (selection.selects(at, tags)) {
                        protectable(field.schema(), at, tags);
                    } else {
                        check(field.schema(), at, tagsOnlyDone);
                    }
                }
            }
            case ARRAY, MAP -> {
                List<Step> at = Selection.plus(path, s.getType() == Schema.Type.ARRAY ? Step.ELEMENT : Step.MAP_VALUE);
                Schema inner = s.getType() == Schema.Type.ARRAY ? s.getElementType() : s.getValueType();
                if (selection.selectsPath(at)) {
                    protectable(inner, at, List.of());
                } else {
                    check(inner, at, tagsOnlyDone);
                }
            }
            case UNION -> s.getTypes().forEach(b -> check(b, path, tagsOnlyDone));
            default -> {
            }
        }
    }

    private void protectable(Schema s, List<Step> path, List<String> tags) {
        boolean ok = switch (s.getType()) {
            case STRING, BYTES -> true;
            case UNION -> s.getTypes().stream().allMatch(b -> b.getType() == Schema.Type.NULL
                    || b.getType() == Schema.Type.STRING || b.getType() == Schema.Type.BYTES)
                    && s.getTypes().stream().anyMatch(b -> b.getType() != Schema.Type.NULL);
            default -> false;
        };
        if (!ok) {
            throw schemaError("field " + Selection.render(path) + " is " + selection.why(path, tags) + " but is "
                    + describe(s) + "; only string and bytes fields can be protected");
        }
    }

    private static String describe(Schema s) {
        return switch (s.getType()) {
            case RECORD -> "record " + s.getName();
            case ENUM -> "enum " + s.getName();
            case FIXED -> "fixed " + s.getName();
            case ARRAY -> "an array";
            case MAP -> "a map";
            case UNION -> "a union of " + s.getTypes().stream().map(AvroSchema::describe).collect(Collectors.joining(", "));
            default -> s.getType().getName();
        };
    }

    // ---- records ------------------------------------------------------------------------

    @Override
    Located locate(byte[] body, int[] messageIndexes) {
        Object value;
        try {
            BinaryDecoder decoder = DecoderFactory.get().binaryDecoder(body, null);
            value = new GenericDatumReader<Object>(schema, schema, GenericData.get()).read(null, decoder);
            if (!decoder.isEnd()) {
                throw decodeError("avro record has trailing bytes after it");
            }
        } catch (IOException | AvroRuntimeException | IndexOutOfBoundsException | NegativeArraySizeException
                 | ClassCastException | UnsupportedOperationException e) {
            throw decodeError("avro record does not decode: " + e.getClass().getSimpleName()
                    + (e.getMessage() == null ? "" : " (" + e.getMessage() + ")"), e);
        }
        Located located = new Located(value);
        walk(value, schema, new ArrayList<>(), "", located);
        return located;
    }

    private void walk(Object value, Schema s, List<Step> path, String at, Located out) {
        if (value == null || (!taggedBelow.contains(s) && !selection.maySelectBelow(path))) {
            return;
        }
        switch (s.getType()) {
            case UNION -> walk(value, s.getTypes().get(GenericData.get().resolveUnion(s, value)), path, at, out);
            case RECORD -> {
                GenericRecord record = (GenericRecord) value;
                for (Schema.Field field : s.getFields()) {
                    List<Step> step = Selection.plus(path, Step.field(field.name()));
                    String where = Selection.child(at, field.name());
                    Object v = record.get(field.pos());
                    if (selection.selects(step, tags(field))) {
                        protect(v, step, where, out, p -> record.put(field.pos(), p));
                    } else {
                        walk(v, field.schema(), step, where, out);
                    }
                }
            }
            case ARRAY -> {
                @SuppressWarnings("unchecked")
                List<Object> list = (List<Object>) value;
                List<Step> step = Selection.plus(path, Step.ELEMENT);
                boolean selected = selection.selectsPath(step);
                for (int i = 0; i < list.size(); i++) {
                    String where = at + "/" + i;
                    int index = i;
                    if (selected) {
                        protect(list.get(i), step, where, out, p -> list.set(index, p));
                    } else {
                        walk(list.get(i), s.getElementType(), step, where, out);
                    }
                }
            }
            case MAP -> {
                @SuppressWarnings("unchecked")
                Map<Object, Object> map = (Map<Object, Object>) value;
                List<Step> step = Selection.plus(path, Step.MAP_VALUE);
                boolean selected = selection.selectsPath(step);
                for (Map.Entry<Object, Object> entry : map.entrySet()) {
                    String where = Selection.child(at, entry.getKey().toString());
                    if (selected) {
                        protect(entry.getValue(), step, where, out, entry::setValue);
                    } else {
                        walk(entry.getValue(), s.getValueType(), step, where, out);
                    }
                }
            }
            default -> {
            }
        }
    }

    private interface Setter {
        void set(Object value);
    }

    private static void protect(Object value, List<Step> path, String at, Located out, Setter setter) {
        if (value == null) {
            return;
        }
        String schemaPath = Selection.render(path);
        if (value instanceof ByteBuffer buffer) {
            byte[] content = new byte[buffer.remaining()];
            buffer.duplicate().get(content);
            out.add(new Located.Found(at, schemaPath, true, content), p -> setter.set(ByteBuffer.wrap(p)));
        } else if (value instanceof Utf8 utf8) {
            out.add(new Located.Found(at, schemaPath, false, utf8.getBytes().length == utf8.getByteLength()
                    ? utf8.getBytes().clone() : java.util.Arrays.copyOf(utf8.getBytes(), utf8.getByteLength())),
                    p -> setter.set(new Utf8(p)));
        } else if (value instanceof CharSequence text) {
            out.add(new Located.Found(at, schemaPath, false, text.toString().getBytes(StandardCharsets.UTF_8)),
                    p -> setter.set(new Utf8(p)));
        } else {
            throw decodeError("field " + schemaPath + " holds neither a string nor bytes");
        }
    }

    @Override
    byte[] encode(Object value) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(out, null);
        try {
            new GenericDatumWriter<Object>(schema, GenericData.get()).write(value, encoder);
            encoder.flush();
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
        return out.toByteArray();
    }
}
