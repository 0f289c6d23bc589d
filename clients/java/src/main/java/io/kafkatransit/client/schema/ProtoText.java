package io.kafkatransit.client.schema;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.google.protobuf.DescriptorProtos.DescriptorProto;
import com.google.protobuf.DescriptorProtos.EnumDescriptorProto;
import com.google.protobuf.DescriptorProtos.EnumOptions;
import com.google.protobuf.DescriptorProtos.EnumValueDescriptorProto;
import com.google.protobuf.DescriptorProtos.FieldDescriptorProto;
import com.google.protobuf.DescriptorProtos.FieldOptions;
import com.google.protobuf.DescriptorProtos.FileDescriptorProto;
import com.google.protobuf.DescriptorProtos.MessageOptions;
import com.google.protobuf.DescriptorProtos.OneofDescriptorProto;
import com.squareup.wire.schema.Field;
import com.squareup.wire.schema.Location;
import com.squareup.wire.schema.internal.parser.EnumConstantElement;
import com.squareup.wire.schema.internal.parser.EnumElement;
import com.squareup.wire.schema.internal.parser.FieldElement;
import com.squareup.wire.schema.internal.parser.GroupElement;
import com.squareup.wire.schema.internal.parser.MessageElement;
import com.squareup.wire.schema.internal.parser.OneOfElement;
import com.squareup.wire.schema.internal.parser.OptionElement;
import com.squareup.wire.schema.internal.parser.ProtoFileElement;
import com.squareup.wire.schema.internal.parser.ProtoParser;
import com.squareup.wire.schema.internal.parser.TypeElement;

/**
 * {@code .proto} text, parsed with Square's wire-schema (what Confluent's own serializers
 * use), as a {@link FileDescriptorProto} protobuf-java can build: messages, nested messages
 * and enums, {@code map<K, V>} fields (their entry messages made as protoc makes them),
 * {@code oneof}s, proto3 {@code optional} (synthetic oneofs), proto2 groups, {@code packed}.
 * Type names are kept as written: protobuf-java resolves them as protoc does. Extensions,
 * services, reserved ranges and other options are left out: decoding records needs none
 * of them. The Confluent tags ({@code (confluent.field_meta).tags}) go to {@code tags}.
 */
final class ProtoText {
    private static final Pattern MAP = Pattern.compile("map\\s*<\\s*([\\w.]+)\\s*,\\s*([\\w.]+)\\s*>");
    private static final Map<String, FieldDescriptorProto.Type> SCALARS = new HashMap<>();

    static {
        String[] names = {"double", "float", "int64", "uint64", "int32", "fixed64", "fixed32", "bool", "string",
            "bytes", "uint32", "sfixed32", "sfixed64", "sint32", "sint64"};
        FieldDescriptorProto.Type[] types = {FieldDescriptorProto.Type.TYPE_DOUBLE, FieldDescriptorProto.Type.TYPE_FLOAT,
            FieldDescriptorProto.Type.TYPE_INT64, FieldDescriptorProto.Type.TYPE_UINT64,
            FieldDescriptorProto.Type.TYPE_INT32, FieldDescriptorProto.Type.TYPE_FIXED64,
            FieldDescriptorProto.Type.TYPE_FIXED32, FieldDescriptorProto.Type.TYPE_BOOL,
            FieldDescriptorProto.Type.TYPE_STRING, FieldDescriptorProto.Type.TYPE_BYTES,
            FieldDescriptorProto.Type.TYPE_UINT32, FieldDescriptorProto.Type.TYPE_SFIXED32,
            FieldDescriptorProto.Type.TYPE_SFIXED64, FieldDescriptorProto.Type.TYPE_SINT32,
            FieldDescriptorProto.Type.TYPE_SINT64};
        for (int i = 0; i < names.length; i++) {
            SCALARS.put(names[i], types[i]);
        }
    }

    private final Set<String> notIndexed;
    private final Map<String, List<String>> tags;

    private ProtoText(Set<String> notIndexed, Map<String, List<String>> tags) {
        this.notIndexed = notIndexed;
        this.tags = tags;
    }

    /**
     * @param notIndexed gets the full names of the messages Confluent's message indexes do not
     *     count (map entries, group types: not declared as messages in the text)
     * @param tags gets the Confluent tags of each tagged field, by the field's full name
     */
    static FileDescriptorProto parse(String text, String fileName, Set<String> notIndexed,
                                     Map<String, List<String>> tags) {
        ProtoFileElement file;
        try {
            file = ProtoParser.Companion.parse(Location.Companion.get(fileName), text);
        } catch (RuntimeException e) {
            throw ParsedSchema.schemaError("protobuf schema " + fileName + " does not parse: " + e.getMessage(), e);
        }
        return new ProtoText(notIndexed, tags).file(file, fileName);
    }

    private FileDescriptorProto file(ProtoFileElement file, String fileName) {
        String syntax = file.getSyntax() == null ? "proto2" : file.getSyntax().toString();
        if (!syntax.equals("proto2") && !syntax.equals("proto3")) {
            throw ParsedSchema.schemaError("protobuf schema " + fileName + ": syntax " + syntax + " is not supported");
        }
        FileDescriptorProto.Builder out = FileDescriptorProto.newBuilder().setName(fileName).setSyntax(syntax);
        String pkg = file.getPackageName() == null ? "" : file.getPackageName();
        if (!pkg.isEmpty()) {
            out.setPackage(pkg);
        }
        out.addAllDependency(file.getImports());
        for (String publicImport : file.getPublicImports()) {
            out.addPublicDependency(out.getDependencyCount());
            out.addDependency(publicImport);
        }
        out.addAllDependency(file.getWeakImports());
        boolean proto3 = syntax.equals("proto3");
        for (TypeElement type : file.getTypes()) {
            if (type instanceof MessageElement m) {
                out.addMessageType(message(m, pkg, proto3));
            } else if (type instanceof EnumElement e) {
                out.addEnumType(enumType(e));
            }
        }
        return out.build();
    }

    private static String join(String scope, String name) {
        return scope.isEmpty() ? name : scope + "." + name;
    }

    private DescriptorProto message(MessageElement m, String scope, boolean proto3) {
        String fullName = join(scope, m.getName());
        DescriptorProto.Builder out = DescriptorProto.newBuilder().setName(m.getName());
        for (TypeElement nested : m.getNestedTypes()) {
            if (nested instanceof MessageElement n) {
                out.addNestedType(message(n, fullName, proto3));
            } else if (nested instanceof EnumElement e) {
                out.addEnumType(enumType(e));
            }
        }
        for (OneOfElement oneof : m.getOneOfs()) {
            int index = out.getOneofDeclCount();
            out.addOneofDecl(OneofDescriptorProto.newBuilder().setName(oneof.getName()));
            for (FieldElement field : oneof.getFields()) {
                out.addField(field(field, out, fullName, proto3).setOneofIndex(index));
            }
            for (GroupElement group : oneof.getGroups()) {
                out.addField(group(group, out, fullName, proto3).setOneofIndex(index));
            }
        }
        for (FieldElement field : m.getFields()) {
            FieldDescriptorProto.Builder f = field(field, out, fullName, proto3);
            if (proto3 && field.getLabel() == Field.Label.OPTIONAL) {
                // proto3 `optional`: a synthetic oneof, after the real ones (as protoc does).
                f.setProto3Optional(true).setOneofIndex(out.getOneofDeclCount());
                out.addOneofDecl(OneofDescriptorProto.newBuilder().setName("_" + field.getName()));
            }
            out.addField(f);
        }
        for (GroupElement group : m.getGroups()) {
            out.addField(group(group, out, fullName, proto3));
        }
        return out.build();
    }

    private FieldDescriptorProto.Builder field(FieldElement field, DescriptorProto.Builder message, String scope,
                                               boolean proto3) {
        FieldDescriptorProto.Builder out = FieldDescriptorProto.newBuilder()
                .setName(field.getName()).setNumber(field.getTag());
        Matcher map = MAP.matcher(field.getType());
        if (map.matches()) {
            String entry = entryName(field.getName());
            message.addNestedType(DescriptorProto.newBuilder().setName(entry)
                    .setOptions(MessageOptions.newBuilder().setMapEntry(true))
                    .addField(typed(FieldDescriptorProto.newBuilder().setName("key").setNumber(1)
                            .setLabel(FieldDescriptorProto.Label.LABEL_OPTIONAL), map.group(1)))
                    .addField(typed(FieldDescriptorProto.newBuilder().setName("value").setNumber(2)
                            .setLabel(FieldDescriptorProto.Label.LABEL_OPTIONAL), map.group(2))));
            notIndexed.add(join(scope, entry));
            out.setLabel(FieldDescriptorProto.Label.LABEL_REPEATED).setTypeName(entry);
        } else {
            typed(out, field.getType());
            out.setLabel(label(field.getLabel()));
        }
        List<String> fieldTags = new ArrayList<>();
        FieldOptions.Builder options = FieldOptions.newBuilder();
        for (OptionElement option : field.getOptions()) {
            String name = option.getName().replaceFirst("^\\.", "");
            if (name.equals("packed") && !option.isParenthesized()) {
                options.setPacked(Boolean.parseBoolean(String.valueOf(unwrap(option.getValue()))));
            } else if (name.equals("confluent.field_meta") && option.isParenthesized()) {
                collectTags(option.getValue(), false, fieldTags);
            } else if (name.startsWith("confluent.field_meta.") && option.isParenthesized()) {
                // wire's form of `(confluent.field_meta).tags` in some versions
                if (name.equals("confluent.field_meta.tags")) {
                    collectTags(option.getValue(), true, fieldTags);
                }
            }
        }
        if (options.hasPacked()) {
            out.setOptions(options);
        }
        if (!fieldTags.isEmpty()) {
            tags.computeIfAbsent(join(scope, field.getName()), k -> new ArrayList<>()).addAll(fieldTags);
        }
        return out;
    }

    private static Object unwrap(Object value) {
        return value instanceof OptionElement.OptionPrimitive p ? p.getValue() : value;
    }

    /** The strings under {@code tags} in an option value ({@code inTags}: already under it). */
    private static void collectTags(Object value, boolean inTags, List<String> out) {
        value = unwrap(value);
        if (value instanceof OptionElement option) {
            collectTags(option.getValue(), inTags || option.getName().equals("tags"), out);
        } else if (value instanceof Map<?, ?> map) {
            for (Map.Entry<?, ?> entry : map.entrySet()) {
                if (inTags || "tags".equals(String.valueOf(entry.getKey()))) {
                    collectTags(entry.getValue(), true, out);
                }
            }
        } else if (value instanceof List<?> list) {
            for (Object item : list) {
                collectTags(item, inTags, out);
            }
        } else if (inTags && value instanceof String text) {
            out.add(text);
        }
    }

    private FieldDescriptorProto.Builder group(GroupElement group, DescriptorProto.Builder message, String scope,
                                               boolean proto3) {
        DescriptorProto.Builder type = DescriptorProto.newBuilder().setName(group.getName());
        String fullName = join(scope, group.getName());
        for (FieldElement field : group.getFields()) {
            type.addField(field(field, type, fullName, proto3));
        }
        message.addNestedType(type);
        notIndexed.add(fullName);
        return FieldDescriptorProto.newBuilder().setName(group.getName().toLowerCase(java.util.Locale.ROOT))
                .setNumber(group.getTag()).setType(FieldDescriptorProto.Type.TYPE_GROUP)
                .setTypeName(group.getName()).setLabel(label(group.getLabel()));
    }

    private static FieldDescriptorProto.Label label(Field.Label label) {
        if (label == Field.Label.REPEATED) {
            return FieldDescriptorProto.Label.LABEL_REPEATED;
        }
        return label == Field.Label.REQUIRED ? FieldDescriptorProto.Label.LABEL_REQUIRED
                : FieldDescriptorProto.Label.LABEL_OPTIONAL;
    }

    private static FieldDescriptorProto.Builder typed(FieldDescriptorProto.Builder field, String type) {
        FieldDescriptorProto.Type scalar = SCALARS.get(type);
        // A named type: protobuf-java resolves it (message or enum) as protoc would.
        return scalar != null ? field.setType(scalar) : field.setTypeName(type);
    }

    /** protoc's name of a map field's entry message: {@code my_map} has {@code MyMapEntry}. */
    static String entryName(String field) {
        StringBuilder out = new StringBuilder();
        boolean upper = true;
        for (char c : field.toCharArray()) {
            if (c == '_') {
                upper = true;
            } else if (upper) {
                out.append(Character.toUpperCase(c));
                upper = false;
            } else {
                out.append(c);
            }
        }
        return out.append("Entry").toString();
    }

    private static EnumDescriptorProto enumType(EnumElement e) {
        EnumDescriptorProto.Builder out = EnumDescriptorProto.newBuilder().setName(e.getName());
        for (EnumConstantElement constant : e.getConstants()) {
            out.addValue(EnumValueDescriptorProto.newBuilder().setName(constant.getName()).setNumber(constant.getTag()));
        }
        for (OptionElement option : e.getOptions()) {
            if (option.getName().equals("allow_alias")) {
                out.setOptions(EnumOptions.newBuilder().setAllowAlias(
                        Boolean.parseBoolean(String.valueOf(unwrap(option.getValue())))));
            }
        }
        return out.build();
    }
}
