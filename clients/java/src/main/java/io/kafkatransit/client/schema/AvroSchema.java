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
 * them, or an array or map of those (each element or value is then protected, located at
 * {@code /tags/0}, {@code /attrs/<map key>}), or a union of null with any of these; a
 * tagged record, enum, array or map of anything else, or a string or bytes with a
 * {@code logicalType}, is a schema error, as for the runner.
 */
final class AvroSchema extends ParsedSchema {
    private static final String TAGS = "confluent:tags";
    private static final String LOGICAL_TYPE = "logicalType";
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

    /**
     * Whether a type fits a ciphertext: {@code protectable}, or not, and then perhaps because
     * it is (or holds) a string or bytes with {@code logicalType}.
     */
    private record Fit(boolean protectable, String logicalType) {
        static final Fit YES = new Fit(true, null);
        static final Fit NO = new Fit(false, null);
    }

    /** A string's or bytes' logical type (only a name counts, as for Avro itself), or null. */
    private static String logicalType(Schema s) {
        return s.getType() == Schema.Type.STRING || s.getType() == Schema.Type.BYTES ? s.getProp(LOGICAL_TYPE) : null;
    }

    /** A string or bytes without a logical type, or a union of them with null. */
    private static Fit leaf(Schema s) {
        switch (s.getType()) {
            case STRING, BYTES -> {
                String logical = logicalType(s);
                return logical == null ? Fit.YES : new Fit(false, logical);
            }
            case UNION -> {
                boolean any = false;
                for (Schema branch : s.getTypes()) {
                    switch (branch.getType()) {
                        case NULL -> {
                        }
                        case STRING, BYTES -> {
                            String logical = logicalType(branch);
                            if (logical != null) {
                                return new Fit(false, logical);
                            }
                            any = true;
                        }
                        default -> {
                            return Fit.NO;
                        }
                    }
                }
                return any ? Fit.YES : Fit.NO;
            }
            default -> {
                return Fit.NO;
            }
        }
    }

    /** An array or map whose items or values are a {@link #leaf}. */
    private static Fit collection(Schema s) {
        return switch (s.getType()) {
            case ARRAY -> leaf(s.getElementType());
            case MAP -> leaf(s.getValueType());
            default -> Fit.NO;
        };
    }

    /**
     * A selected field of type {@code s}: a string or bytes, or a union of them with null,
     * is protected; so is each element of an array and each value of a map of those (as a
     * Protobuf tag on a {@code repeated string} protects each element), and a union with null
     * may hold such arrays and maps too. Anything else is refused, and so is a string or bytes
     * with a logical type, which a ciphertext does not fit. The same rules as the runner's.
     */
    private void protectable(Schema s, List<Step> path, List<String> tags) {
        Fit fit = leaf(s);
        if (fit.protectable()) {
            return;
        }
        if (fit.logicalType() != null) {
            throw logicalTypeError(s, path, tags, fit.logicalType());
        }
        switch (s.getType()) {
            case ARRAY, MAP -> fit = collection(s);
            case UNION -> {
                boolean any = false;
                for (Schema branch : s.getTypes()) {
                    if (branch.getType() == Schema.Type.NULL) {
                        continue;
                    }
                    Fit one = leaf(branch);
                    if (!one.protectable() && one.logicalType() == null) {
                        one = collection(branch);
                    }
                    if (one.logicalType() != null) {
                        throw logicalTypeError(s, path, tags, one.logicalType());
                    }
                    if (!one.protectable()) {
                        throw notProtectable(s, path, tags);
                    }
                    any = true;
                }
                fit = any ? Fit.YES : Fit.NO;
            }
            default -> {
            }
        }
        if (fit.logicalType() != null) {
            throw logicalTypeError(s, path, tags, fit.logicalType());
        }
        if (!fit.protectable()) {
            throw notProtectable(s, path, tags);
        }
    }

    private SchemaFieldsException notProtectable(Schema s, List<Step> path, List<String> tags) {
        return schemaError("field " + Selection.render(path) + " is " + selection.why(path, tags) + " but is "
                + describe(s) + "; only string and bytes fields, and arrays and maps of them, can be protected");
    }

    /**
     * A selected field is (or holds) a string or bytes of logical type {@code logical}: a
     * ciphertext is not one, and a reader that converts logical types (into a UUID, a decimal
     * number) would fail on it, or read another value.
     */
    private SchemaFieldsException logicalTypeError(Schema s, List<Step> path, List<String> tags, String logical) {
        return schemaError("field " + Selection.render(path) + " is " + selection.why(path, tags) + " but is "
                + describe(s) + ": a ciphertext is not a valid " + logical + ", so consumers would fail to read the "
                + "record; remove " + (selection.selectingTag(tags) != null ? "the tag" : "the path")
                + " or the logical type");
    }

    private static String describe(Schema s) {
        return switch (s.getType()) {
            case RECORD -> "record " + s.getName();
            case ENUM -> "enum " + s.getName();
            case FIXED -> "fixed " + s.getName();
            case ARRAY -> "an array of " + describe(s.getElementType());
            case MAP -> "a map of " + describe(s.getValueType());
            case UNION -> "a union of " + s.getTypes().stream().map(AvroSchema::describe).collect(Collectors.joining(", "));
            case STRING, BYTES -> s.getType().getName()
                    + (logicalType(s) == null ? "" : " (logical type " + logicalType(s) + ")");
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
                        protectSelected(v, field.schema(), step, where, out, p -> record.put(field.pos(), p));
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
                        protectSelected(list.get(i), s.getElementType(), step, where, out, p -> list.set(index, p));
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
                        protectSelected(entry.getValue(), s.getValueType(), step, where, out, entry::setValue);
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

    /**
     * A selected field's value of type {@code s} (checked by {@link #protectable}): a string or
     * bytes is protected; an array's elements and a map's values each are, at their located
     * paths ({@code /tags/0}, {@code /attrs/<map key>}), the map keys staying in clear.
     */
    private static void protectSelected(Object value, Schema s, List<Step> path, String at, Located out,
                                        Setter setter) {
        if (value == null) {
            return;
        }
        switch (s.getType()) {
            case UNION -> protectSelected(value, s.getTypes().get(GenericData.get().resolveUnion(s, value)), path, at,
                    out, setter);
            case ARRAY -> {
                if (!(value instanceof List<?>)) {
                    throw decodeError("field " + Selection.render(path) + " holds no array");
                }
                @SuppressWarnings("unchecked")
                List<Object> list = (List<Object>) value;
                List<Step> step = Selection.plus(path, Step.ELEMENT);
                for (int i = 0; i < list.size(); i++) {
                    int index = i;
                    protect(list.get(i), step, at + "/" + i, out, p -> list.set(index, p));
                }
            }
            case MAP -> {
                if (!(value instanceof Map<?, ?>)) {
                    throw decodeError("field " + Selection.render(path) + " holds no map");
                }
                @SuppressWarnings("unchecked")
                Map<Object, Object> map = (Map<Object, Object>) value;
                List<Step> step = Selection.plus(path, Step.MAP_VALUE);
                for (Map.Entry<Object, Object> entry : map.entrySet()) {
                    protect(entry.getValue(), step, Selection.child(at, entry.getKey().toString()), out,
                            entry::setValue);
                }
            }
            default -> protect(value, path, at, out, setter);
        }
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
