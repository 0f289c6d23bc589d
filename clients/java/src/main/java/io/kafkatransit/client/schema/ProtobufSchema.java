package io.kafkatransit.client.schema;

import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.google.protobuf.AnyProto;
import com.google.protobuf.ApiProto;
import com.google.protobuf.ByteString;
import com.google.protobuf.DescriptorProtos;
import com.google.protobuf.DescriptorProtos.DescriptorProto;
import com.google.protobuf.DescriptorProtos.FieldDescriptorProto;
import com.google.protobuf.DescriptorProtos.FileDescriptorProto;
import com.google.protobuf.Descriptors.Descriptor;
import com.google.protobuf.Descriptors.DescriptorValidationException;
import com.google.protobuf.Descriptors.FieldDescriptor;
import com.google.protobuf.Descriptors.FileDescriptor;
import com.google.protobuf.DurationProto;
import com.google.protobuf.DynamicMessage;
import com.google.protobuf.EmptyProto;
import com.google.protobuf.ExtensionRegistry;
import com.google.protobuf.FieldMaskProto;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.SourceContextProto;
import com.google.protobuf.StructProto;
import com.google.protobuf.TimestampProto;
import com.google.protobuf.TypeProto;
import com.google.protobuf.UnknownFieldSet;
import com.google.protobuf.WrappersProto;

import io.kafkatransit.client.schema.Selection.Step;

/**
 * Protobuf records read with protobuf-java into {@link DynamicMessage}s. The schema comes as
 * {@code .proto} text (Confluent's registry; parsed by {@link ProtoText}, which needs
 * wire-schema) or as a base64 {@code FileDescriptorProto} (what Apicurio keeps for schemas
 * the Python serializer registered); references are the imported files, by import path.
 * The well-known types ({@code google/protobuf/*.proto}) come from protobuf-java; other
 * imports that are not given (Confluent's {@code confluent/meta.proto}, Google's common
 * types) are allowed, their types opaque. Types under {@code google.protobuf},
 * {@code google.type}, {@code confluent.type} and Confluent's {@code Meta} are never walked.
 *
 * <p>Message indexes are counted as the runner counts them: over a descriptor's
 * {@code nested_type}, or over the messages the text declares (not map entries or groups).
 * A tagged repeated string or map of strings protects each element or value.
 */
final class ProtobufSchema extends ParsedSchema {
    private static final int FIELD_META = 1088;
    private static final int META_TAGS = 3;
    private static final int MAX_EXPANSIONS = 100_000;
    private static final Map<String, FileDescriptor> WELL_KNOWN = new HashMap<>();

    static {
        for (FileDescriptor file : List.of(AnyProto.getDescriptor(), ApiProto.getDescriptor(),
                DurationProto.getDescriptor(), EmptyProto.getDescriptor(), FieldMaskProto.getDescriptor(),
                SourceContextProto.getDescriptor(), StructProto.getDescriptor(), TimestampProto.getDescriptor(),
                TypeProto.getDescriptor(), WrappersProto.getDescriptor(), DescriptorProtos.getDescriptor())) {
            WELL_KNOWN.put(file.getName(), file);
        }
    }

    private enum Shape { SINGLE, REPEATED, MAP }

    private record NodeField(FieldDescriptor field, Shape shape, boolean protect, boolean bytes, Node child,
                             String schemaPath) {
    }

    private static final class Node {
        final List<NodeField> fields = new ArrayList<>();
    }

    private final Selection selection;
    private final FileDescriptor root;
    private final Set<String> notIndexed = new HashSet<>();
    private final Map<String, List<String>> tags = new HashMap<>();
    private final Map<Descriptor, Node> entries = new IdentityHashMap<>();
    private final Map<Descriptor, Node> byTags = new IdentityHashMap<>();
    private int expansions;

    ProtobufSchema(RegisteredSchema registered, Selection selection) {
        this.selection = selection;
        Map<String, FileDescriptorProto> files = new HashMap<>();
        for (RegisteredSchema.Reference reference : registered.references()) {
            files.put(reference.name(), parseFile(reference.text(), reference.name()));
        }
        FileDescriptorProto rootProto = parseFile(registered.text(), null);
        Map<String, FileDescriptor> built = new HashMap<>();
        this.root = build(rootProto, files, built, new ArrayList<>());
        if (root.getMessageTypes().isEmpty()) {
            throw schemaError("protobuf schema declares no message");
        }
        compileTags();
        for (Descriptor message : own(root)) {
            Node node = compilePath(message, new ArrayList<>());
            if (node != null) {
                entries.put(message, node);
            }
        }
    }

    @Override
    RegisteredSchema.Type type() {
        return RegisteredSchema.Type.PROTOBUF;
    }

    // ---- files ---------------------------------------------------------------------------

    private static boolean looksLikeBase64(String text) {
        String t = text.strip();
        return !t.isEmpty() && t.chars().allMatch(c -> c < 128 && (Character.isLetterOrDigit(c)
                || c == '+' || c == '/' || c == '=' || c == '-' || c == '_' || Character.isWhitespace(c)));
    }

    /** A file as the registry gave it: base64 {@code FileDescriptorProto}, else {@code .proto} text. */
    private FileDescriptorProto parseFile(String text, String name) {
        if (looksLikeBase64(text)) {
            try {
                String compact = text.replaceAll("\\s", "");
                byte[] bytes = compact.contains("-") || compact.contains("_")
                        ? Base64.getUrlDecoder().decode(compact.replace("=", ""))
                        : Base64.getDecoder().decode(compact);
                FileDescriptorProto proto = FileDescriptorProto.parseFrom(bytes);
                if (name != null && !proto.getName().equals(name)) {
                    proto = proto.toBuilder().setName(name).build();
                } else if (name == null && proto.getName().isEmpty()) {
                    proto = proto.toBuilder().setName("schema.proto").build();
                }
                collectTags(proto);
                return proto;
            } catch (IllegalArgumentException | InvalidProtocolBufferException e) {
                // A file of comments alone can look like base64 too: try it as text.
            }
        }
        try {
            return ProtoText.parse(text, name == null ? "schema.proto" : name, notIndexed, tags);
        } catch (NoClassDefFoundError e) {
            throw schemaError("the schema is .proto text, which needs com.squareup.wire:wire-schema-jvm "
                    + "on the classpath to parse", e);
        }
    }

    /** A descriptor's Confluent tags: FieldOptions extension 1088 ({@code Meta}), its field 3. */
    private void collectTags(FileDescriptorProto file) {
        String pkg = file.getPackage();
        for (DescriptorProto message : file.getMessageTypeList()) {
            collectTags(message, pkg.isEmpty() ? message.getName() : pkg + "." + message.getName());
        }
    }

    private void collectTags(DescriptorProto message, String fullName) {
        for (FieldDescriptorProto field : message.getFieldList()) {
            UnknownFieldSet.Field meta = field.getOptions().getUnknownFields().getField(FIELD_META);
            List<String> found = new ArrayList<>();
            for (ByteString bytes : meta.getLengthDelimitedList()) {
                try {
                    for (ByteString tag : UnknownFieldSet.parseFrom(bytes).getField(META_TAGS).getLengthDelimitedList()) {
                        found.add(tag.toStringUtf8());
                    }
                } catch (InvalidProtocolBufferException e) {
                    throw schemaError("protobuf field " + fullName + "." + field.getName()
                            + " has a (confluent.field_meta) option that does not decode", e);
                }
            }
            if (!found.isEmpty()) {
                tags.computeIfAbsent(fullName + "." + field.getName(), k -> new ArrayList<>()).addAll(found);
            }
        }
        for (DescriptorProto nested : message.getNestedTypeList()) {
            collectTags(nested, fullName + "." + nested.getName());
        }
    }

    private static FileDescriptor build(FileDescriptorProto proto, Map<String, FileDescriptorProto> files,
                                        Map<String, FileDescriptor> built, List<String> stack) {
        FileDescriptor done = built.get(proto.getName());
        if (done != null) {
            return done;
        }
        if (stack.contains(proto.getName())) {
            throw schemaError("protobuf imports form a cycle: " + String.join(" -> ", stack) + " -> " + proto.getName());
        }
        stack.add(proto.getName());
        List<FileDescriptor> dependencies = new ArrayList<>();
        for (String dependency : proto.getDependencyList()) {
            FileDescriptor wellKnown = WELL_KNOWN.get(dependency);
            if (wellKnown != null) {
                dependencies.add(wellKnown);
            } else if (files.containsKey(dependency)) {
                dependencies.add(build(files.get(dependency), files, built, stack));
            }
            // Otherwise not given: allowed (confluent/meta.proto, google/type/...); a type of
            // it used by a field is checked when the fields are compiled.
        }
        stack.remove(stack.size() - 1);
        try {
            FileDescriptor file = FileDescriptor.buildFrom(proto, dependencies.toArray(new FileDescriptor[0]), true);
            built.put(proto.getName(), file);
            return file;
        } catch (DescriptorValidationException | RuntimeException e) {
            throw schemaError("protobuf schema " + proto.getName() + " cannot be used: " + e.getMessage(), e);
        }
    }

    private static List<Descriptor> own(FileDescriptor file) {
        List<Descriptor> out = new ArrayList<>();
        List<Descriptor> work = new ArrayList<>(file.getMessageTypes());
        while (!work.isEmpty()) {
            Descriptor d = work.remove(work.size() - 1);
            out.add(d);
            work.addAll(d.getNestedTypes());
        }
        return out;
    }

    static boolean opaque(String fullName) {
        return fullName.startsWith("google.protobuf.") || fullName.startsWith("google.type.")
                || fullName.startsWith("confluent.type.") || fullName.equals("confluent.Meta")
                || fullName.startsWith("confluent.Meta.") || fullName.equals("confluent.Rule");
    }

    private static boolean placeholder(Descriptor d) {
        return d.getFile().getName().endsWith(".placeholder.proto");
    }

    // ---- which fields ---------------------------------------------------------------------

    /** A field's values: a map's values are its entries' values. */
    private static FieldDescriptor valueOf(FieldDescriptor field) {
        return field.isMapField() ? field.getMessageType().findFieldByNumber(2) : field;
    }

    private static Shape shape(FieldDescriptor field) {
        return field.isMapField() ? Shape.MAP : field.isRepeated() ? Shape.REPEATED : Shape.SINGLE;
    }

    /** The message a field's values are, when it is one the walk may enter. */
    private static Descriptor message(FieldDescriptor field) {
        FieldDescriptor value = valueOf(field);
        if (value.getJavaType() != FieldDescriptor.JavaType.MESSAGE) {
            return null;
        }
        Descriptor type = value.getMessageType();
        if (opaque(type.getFullName())) {
            return null;
        }
        if (placeholder(type)) {
            throw schemaError("protobuf field " + field.getFullName() + " has the type " + type.getFullName()
                    + ", which neither the schema nor its references define");
        }
        return type;
    }

    private List<String> tagsOf(FieldDescriptor field) {
        return tags.getOrDefault(field.getFullName(), List.of());
    }

    private static String describe(FieldDescriptor value) {
        return switch (value.getJavaType()) {
            case MESSAGE -> "message `" + value.getMessageType().getFullName() + "`";
            case ENUM -> "an enum";
            default -> value.getType().name().toLowerCase(java.util.Locale.ROOT);
        };
    }

    /** Whether the field's values are strings or bytes; a schema error otherwise. */
    private static boolean protectedBytes(FieldDescriptor field, String why) {
        FieldDescriptor value = valueOf(field);
        if (value.getType() == FieldDescriptor.Type.STRING) {
            return false;
        }
        if (value.getType() == FieldDescriptor.Type.BYTES) {
            return true;
        }
        throw schemaError("field `" + field.getFullName() + "` is selected (" + why + ") but holds "
                + describe(value) + ": only string and bytes fields can be protected");
    }

    private NodeField protect(FieldDescriptor field, String why, List<Step> path) {
        return new NodeField(field, shape(field), true, protectedBytes(field, why), null, Selection.render(path));
    }

    /** Nodes for tags alone, for each message from which a tagged field can be reached. */
    private void compileTags() {
        List<Descriptor> reachable = new ArrayList<>();
        Set<Descriptor> seen = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
        List<Descriptor> work = new ArrayList<>(own(root));
        Map<Descriptor, List<Descriptor>> holders = new IdentityHashMap<>();
        while (!work.isEmpty()) {
            Descriptor d = work.remove(work.size() - 1);
            if (!seen.add(d)) {
                continue;
            }
            reachable.add(d);
            for (FieldDescriptor field : d.getFields()) {
                Descriptor child = message(field);
                if (child != null) {
                    holders.computeIfAbsent(child, k -> new ArrayList<>()).add(d);
                    work.add(child);
                }
            }
        }
        Set<Descriptor> leads = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
        for (Descriptor d : reachable) {
            for (FieldDescriptor field : d.getFields()) {
                String tag = selection.selectingTag(tagsOf(field));
                if (tag != null) {
                    protectedBytes(field, "tagged " + tag);
                    if (leads.add(d)) {
                        work.add(d);
                    }
                }
            }
        }
        while (!work.isEmpty()) {
            Descriptor d = work.remove(work.size() - 1);
            for (Descriptor holder : holders.getOrDefault(d, List.of())) {
                if (leads.add(holder)) {
                    work.add(holder);
                }
            }
        }
        for (Descriptor d : leads) {
            byTags.put(d, new Node());
        }
        for (Descriptor d : leads) {
            Node node = byTags.get(d);
            for (FieldDescriptor field : d.getFields()) {
                String tag = selection.selectingTag(tagsOf(field));
                if (tag != null) {
                    node.fields.add(new NodeField(field, shape(field), true, protectedBytes(field, "tagged " + tag),
                            null, field.getFullName()));
                } else {
                    Descriptor child = message(field);
                    if (child != null && byTags.containsKey(child)) {
                        node.fields.add(new NodeField(field, shape(field), false, false, byTags.get(child), null));
                    }
                }
            }
        }
    }

    private Node compilePath(Descriptor message, List<Step> path) {
        if (!selection.maySelectBelow(path)) {
            return byTags.get(message);
        }
        if (++expansions > MAX_EXPANSIONS) {
            throw schemaError("the configured field paths expand to too many schema paths");
        }
        Node node = new Node();
        for (FieldDescriptor field : message.getFields()) {
            List<Step> at = Selection.plus(path, Step.field(field.getName()));
            NodeField found = fieldTarget(field, at);
            if (found != null) {
                node.fields.add(found);
            }
        }
        return node.fields.isEmpty() ? null : node;
    }

    private NodeField fieldTarget(FieldDescriptor field, List<Step> path) {
        List<String> fieldTags = tagsOf(field);
        // Selecting the field itself selects each of its elements or map values.
        if (selection.selects(path, fieldTags)) {
            return protect(field, selection.why(path, fieldTags), path);
        }
        Shape shape = shape(field);
        List<Step> inner = shape == Shape.SINGLE ? path
                : Selection.plus(path, shape == Shape.REPEATED ? Step.ELEMENT : Step.MAP_VALUE);
        if (inner != path && selection.selectsPath(inner)) {
            return protect(field, "selected by the path " + selection.selectingPath(inner), inner);
        }
        Descriptor child = message(field);
        if (child == null) {
            return null;
        }
        Node node = compilePath(child, inner);
        return node == null ? null : new NodeField(field, shape, false, false, node, null);
    }

    // ---- records ---------------------------------------------------------------------------

    /** The message the indexes name ({@code []} is the first). */
    private Descriptor messageAt(int[] indexes) {
        int[] path = indexes.length == 0 ? new int[] {0} : indexes;
        List<Descriptor> level = root.getMessageTypes();
        Descriptor d = null;
        for (int index : path) {
            if (index < 0 || index >= level.size()) {
                throw decodeError("protobuf message indexes " + java.util.Arrays.toString(indexes)
                        + " name no message of the schema");
            }
            d = level.get(index);
            level = d.getNestedTypes().stream().filter(n -> !notIndexed.contains(n.getFullName())).toList();
        }
        return d;
    }

    @Override
    Located locate(byte[] body, int[] messageIndexes) {
        Descriptor type = messageAt(messageIndexes);
        DynamicMessage message;
        try {
            message = DynamicMessage.newBuilder(type).mergeFrom(body, ExtensionRegistry.getEmptyRegistry())
                    .buildPartial();
        } catch (InvalidProtocolBufferException | RuntimeException e) {
            throw decodeError("protobuf record (" + type.getFullName() + ") does not decode: " + e.getMessage(), e);
        }
        Located located = new Located(message);
        Node node = entries.get(type);
        if (node != null) {
            collect(message, node, "", located);
            if (!located.fields.isEmpty()) {
                located.rebuildWith(plaintexts -> rebuild(message, node, plaintexts.iterator()));
            }
        }
        return located;
    }

    private static String mapKey(DynamicMessage entry) {
        FieldDescriptor key = entry.getDescriptorForType().findFieldByNumber(1);
        Object value = entry.getField(key);
        return switch (key.getType()) {
            case UINT32, FIXED32 -> Integer.toUnsignedString((Integer) value);
            case UINT64, FIXED64 -> Long.toUnsignedString((Long) value);
            default -> String.valueOf(value);
        };
    }

    private void collect(DynamicMessage message, Node node, String at, Located out) {
        for (NodeField nf : node.fields) {
            FieldDescriptor field = nf.field();
            String where = Selection.child(at, field.getName());
            switch (nf.shape()) {
                case SINGLE -> {
                    if (message.hasField(field)) {
                        value(message.getField(field), nf, where, out);
                    }
                }
                case REPEATED -> {
                    for (int i = 0, n = message.getRepeatedFieldCount(field); i < n; i++) {
                        value(message.getRepeatedField(field, i), nf, where + "/" + i, out);
                    }
                }
                case MAP -> {
                    for (int i = 0, n = message.getRepeatedFieldCount(field); i < n; i++) {
                        DynamicMessage entry = (DynamicMessage) message.getRepeatedField(field, i);
                        FieldDescriptor valueField = entry.getDescriptorForType().findFieldByNumber(2);
                        if (entry.hasField(valueField)) {
                            value(entry.getField(valueField), nf, Selection.child(where, mapKey(entry)), out);
                        }
                    }
                }
            }
        }
    }

    private void value(Object value, NodeField nf, String where, Located out) {
        if (!nf.protect()) {
            collect((DynamicMessage) value, nf.child(), where, out);
        } else if (value instanceof ByteString bytes) {
            out.add(new Located.Found(where, nf.schemaPath(), true, bytes.toByteArray()), null);
        } else {
            out.add(new Located.Found(where, nf.schemaPath(), false,
                    ((String) value).getBytes(java.nio.charset.StandardCharsets.UTF_8)), null);
        }
    }

    /** The message again, each located field's plaintext in place (the order {@link #collect} found them in). */
    private DynamicMessage rebuild(DynamicMessage message, Node node, Iterator<byte[]> plaintexts) {
        DynamicMessage.Builder builder = message.toBuilder();
        for (NodeField nf : node.fields) {
            FieldDescriptor field = nf.field();
            switch (nf.shape()) {
                case SINGLE -> {
                    if (message.hasField(field)) {
                        builder.setField(field, replaced(message.getField(field), nf, plaintexts));
                    }
                }
                case REPEATED -> {
                    for (int i = 0, n = message.getRepeatedFieldCount(field); i < n; i++) {
                        builder.setRepeatedField(field, i, replaced(message.getRepeatedField(field, i), nf, plaintexts));
                    }
                }
                case MAP -> {
                    for (int i = 0, n = message.getRepeatedFieldCount(field); i < n; i++) {
                        DynamicMessage entry = (DynamicMessage) message.getRepeatedField(field, i);
                        FieldDescriptor valueField = entry.getDescriptorForType().findFieldByNumber(2);
                        if (entry.hasField(valueField)) {
                            builder.setRepeatedField(field, i, entry.toBuilder().setField(valueField,
                                    replaced(entry.getField(valueField), nf, plaintexts)).buildPartial());
                        }
                    }
                }
            }
        }
        return builder.buildPartial();
    }

    private Object replaced(Object value, NodeField nf, Iterator<byte[]> plaintexts) {
        if (!nf.protect()) {
            return rebuild((DynamicMessage) value, nf.child(), plaintexts);
        }
        byte[] plaintext = plaintexts.next();
        return nf.bytes() ? ByteString.copyFrom(plaintext) : new String(plaintext, java.nio.charset.StandardCharsets.UTF_8);
    }

    @Override
    byte[] encode(Object value) {
        return ((DynamicMessage) value).toByteArray();
    }

    /** The descriptor of the schema's file (for tests and callers that want generated-code-like access). */
    FileDescriptor file() {
        return root;
    }
}
