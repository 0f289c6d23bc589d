package io.kafkatransit.client.schema;

import java.io.IOException;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;
import java.util.stream.Collectors;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.cfg.JsonNodeFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;

import io.kafkatransit.client.schema.Selection.Step;

/**
 * JSON Schema records (the JSON text Confluent's serializer writes) read with Jackson into
 * {@link JsonNode}s (numbers kept exactly, duplicate member names refused). The record is
 * walked with, at each place, every subschema that applies there: {@code $ref} (local
 * pointers and anchors, other documents by reference name or {@code $id}), every branch of
 * {@code allOf}/{@code anyOf}/{@code oneOf}, {@code if}/{@code then}/{@code else},
 * {@code dependentSchemas}; members by {@code properties}, {@code patternProperties},
 * {@code additionalProperties} and {@code unevaluatedProperties}; elements by
 * {@code items} (schema or draft 7 array), {@code prefixItems}, {@code additionalItems},
 * {@code contains} and {@code unevaluatedItems}. A selected field's schemas must make it a
 * string (or null) with none of the keywords a ciphertext may fail ({@code pattern},
 * {@code maxLength}, {@code format}, {@code enum}, {@code const}, {@code contentEncoding},
 * {@code contentMediaType}), or an array of such strings ({@code items}) or a map of them (an
 * object with no {@code properties}, its {@code additionalProperties} such strings), whose
 * every element or value is then selected ({@code /tags/0}, {@code /attrs/<member name>});
 * anything else is a schema error, as for the runner. {@code $dynamicRef} and
 * {@code $recursiveRef} are refused.
 */
final class JsonSchema extends ParsedSchema {
    static final JsonMapper MAPPER = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS)
            .disable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
            .disable(JsonNodeFeature.STRIP_TRAILING_BIGDECIMAL_ZEROES)
            .build();
    private static final String TAGS = "confluent:tags";
    private static final int MAX_DEPTH = 128;
    /**
     * The keywords that constrain a string in a way its ciphertext ({@code vault:v1:<base64>})
     * may not satisfy: a consumer validating a record whose field is protected would refuse it.
     * ({@code minLength} is no such keyword: a ciphertext is longer than its plaintext.)
     */
    private static final List<String> STRING_CONSTRAINTS = List.of("pattern", "maxLength", "format", "enum", "const",
            "contentEncoding", "contentMediaType");

    /** What a selected place is: a string, or an array or map of strings, each element or value selected. */
    private enum Selected { STRING, ARRAY, MAP }

    /** A schema document: its root, its base URI ($id), the name it is referenced by. */
    private record Doc(String name, JsonNode root, URI base) {
    }

    /** A subschema with the document its {@code $ref}s resolve in. */
    private record Sub(JsonNode node, Doc doc) {
    }

    private final Selection selection;
    private final List<Doc> docs = new ArrayList<>();
    private final Map<String, Sub> ids = new HashMap<>();
    private final Map<String, Pattern> patterns = new java.util.concurrent.ConcurrentHashMap<>();
    private final Doc main;

    JsonSchema(RegisteredSchema registered, Selection selection) {
        this.selection = selection;
        for (RegisteredSchema.Reference reference : registered.references()) {
            docs.add(doc(reference.name(), reference.text()));
        }
        main = doc("", registered.text());
        docs.add(main);
        for (Doc doc : docs) {
            indexIds(doc.root(), doc, doc.base(), 0);
        }
        checkTagged();
    }

    @Override
    RegisteredSchema.Type type() {
        return RegisteredSchema.Type.JSON;
    }

    private static Doc doc(String name, String text) {
        JsonNode root;
        try {
            root = MAPPER.readTree(text);
        } catch (JsonProcessingException e) {
            throw schemaError("json schema " + (name.isEmpty() ? "" : "reference \"" + name + "\" ")
                    + "is not JSON: " + e.getOriginalMessage(), e);
        }
        URI base = null;
        JsonNode id = root.get("$id");
        try {
            base = id != null && id.isTextual() ? URI.create(id.asText()) : name.isEmpty() ? null : URI.create(name);
        } catch (IllegalArgumentException e) {
            base = null;
        }
        return new Doc(name, root, base);
    }

    /** Embedded resources ({@code $id} on a subschema) and anchors, by absolute URI where there is one. */
    private void indexIds(JsonNode node, Doc doc, URI base, int depth) {
        if (depth > MAX_DEPTH || node == null || !node.isContainerNode()) {
            return;
        }
        if (node.isObject()) {
            JsonNode id = node.get("$id");
            if (id != null && id.isTextual()) {
                try {
                    URI uri = base == null ? URI.create(id.asText()) : base.resolve(id.asText());
                    String key = uri.toString();
                    if (key.contains("#") && !key.endsWith("#")) {
                        ids.putIfAbsent(key, new Sub(node, doc)); // draft 7 "$id": "#anchor"
                    } else {
                        ids.putIfAbsent(key.replaceAll("#$", ""), new Sub(node, new Doc(doc.name(), node, uri)));
                        base = uri;
                    }
                } catch (IllegalArgumentException e) {
                    // not a URI: not addressable
                }
            }
            JsonNode anchor = node.get("$anchor");
            if (anchor != null && anchor.isTextual()) {
                String prefix = base == null ? doc.name() : base.toString().replaceAll("#.*$", "");
                ids.putIfAbsent(prefix + "#" + anchor.asText(), new Sub(node, doc));
            }
        }
        for (JsonNode child : node) {
            indexIds(child, doc, base, depth + 1);
        }
    }

    // ---- $ref ----------------------------------------------------------------------------

    private Sub resolve(String ref, Doc from) {
        int hash = ref.indexOf('#');
        String target = hash < 0 ? ref : ref.substring(0, hash);
        String fragment = hash < 0 ? "" : ref.substring(hash + 1);
        Doc doc = from;
        if (!target.isEmpty()) {
            doc = findDoc(target, from);
            if (doc == null) {
                throw schemaError("json schema $ref \"" + ref + "\" names a document the schema's references do not hold");
            }
        }
        if (fragment.isEmpty()) {
            return new Sub(doc.root(), doc);
        }
        if (fragment.startsWith("/")) {
            JsonNode node = doc.root();
            for (String raw : fragment.substring(1).split("/", -1)) {
                String token = URLDecoder.decode(raw.replace("+", "%2B"), StandardCharsets.UTF_8)
                        .replace("~1", "/").replace("~0", "~");
                node = node.isArray() && token.matches("\\d+") ? node.get(Integer.parseInt(token)) : node.get(token);
                if (node == null) {
                    throw schemaError("json schema $ref \"" + ref + "\" points at nothing");
                }
            }
            return new Sub(node, doc);
        }
        String base = doc.base() == null ? doc.name() : doc.base().toString().replaceAll("#.*$", "");
        Sub anchored = ids.get(base + "#" + fragment);
        if (anchored == null) {
            throw schemaError("json schema $ref \"" + ref + "\": no anchor \"" + fragment + "\"");
        }
        return anchored;
    }

    private Doc findDoc(String target, Doc from) {
        for (Doc doc : docs) {
            if (doc.name().equals(target) || doc.base() != null && doc.base().toString().equals(target)) {
                return doc;
            }
        }
        try {
            String absolute = from.base() == null ? target : from.base().resolve(target).toString();
            Sub byId = ids.get(absolute);
            if (byId != null) {
                return byId.doc();
            }
            for (Doc doc : docs) {
                if (doc.name().equals(absolute) || doc.base() != null && doc.base().toString().equals(absolute)) {
                    return doc;
                }
            }
        } catch (IllegalArgumentException e) {
            // fall through
        }
        return null;
    }

    /** The subschemas that apply wherever {@code subs} apply: through $ref and the combinators. */
    private List<Sub> closure(List<Sub> subs) {
        Set<JsonNode> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        List<Sub> out = new ArrayList<>();
        List<Sub> work = new ArrayList<>(subs);
        while (!work.isEmpty()) {
            Sub sub = work.remove(work.size() - 1);
            if (!sub.node().isObject() || !seen.add(sub.node())) {
                continue;
            }
            if (out.size() > 10_000) {
                throw schemaError("json schema: too many subschemas apply at one place");
            }
            out.add(sub);
            JsonNode node = sub.node();
            Doc doc = sub.doc();
            JsonNode id = node.get("$id");
            if (id != null && id.isTextual() && doc.root() != node && !id.asText().startsWith("#")) {
                Sub resource = ids.get((doc.base() == null ? URI.create(id.asText()) : doc.base().resolve(id.asText()))
                        .toString().replaceAll("#$", ""));
                if (resource != null) {
                    doc = resource.doc();
                }
            }
            if (node.has("$dynamicRef") || node.has("$recursiveRef")) {
                throw schemaError("json schema uses $dynamicRef or $recursiveRef, which this reader does not support");
            }
            JsonNode ref = node.get("$ref");
            if (ref != null && ref.isTextual()) {
                work.add(resolve(ref.asText(), doc));
            }
            for (String keyword : List.of("allOf", "anyOf", "oneOf")) {
                for (JsonNode branch : node.path(keyword)) {
                    work.add(new Sub(branch, doc));
                }
            }
            for (String keyword : List.of("if", "then", "else")) {
                if (node.has(keyword)) {
                    work.add(new Sub(node.get(keyword), doc));
                }
            }
            for (String keyword : List.of("dependentSchemas", "dependencies")) {
                for (JsonNode dependent : node.path(keyword)) {
                    if (dependent.isObject()) {
                        work.add(new Sub(dependent, doc));
                    }
                }
            }
        }
        return out;
    }

    private String selectingTag(List<Sub> subs) {
        for (Sub sub : subs) {
            List<String> tags = new ArrayList<>();
            JsonNode t = sub.node().get(TAGS);
            if (t != null) {
                if (!t.isArray()) {
                    throw schemaError("json schema: a \"confluent:tags\" that is not an array");
                }
                t.forEach(tag -> tags.add(tag.asText()));
            }
            String tag = selection.selectingTag(tags);
            if (tag != null) {
                return tag;
            }
        }
        return null;
    }

    /** A schema's {@code type}, as a set; null if it has none. */
    private static Set<String> types(JsonNode schema) {
        JsonNode type = schema.get("type");
        if (type != null && type.isTextual()) {
            return Set.of(type.asText());
        }
        if (type != null && type.isArray()) {
            Set<String> types = new LinkedHashSet<>();
            type.forEach(t -> types.add(t.asText()));
            return types;
        }
        return null;
    }

    /** The union of the types the schemas give (empty if none gives one). */
    private static Set<String> types(List<Sub> subs) {
        Set<String> types = new TreeSet<>();
        for (Sub sub : subs) {
            Set<String> one = types(sub.node());
            if (one != null) {
                types.addAll(one);
            }
        }
        return types;
    }

    /** Types for reasons, as the runner shows them: {@code integer}, {@code ["number", "string"]}. */
    private static String describe(Set<String> types) {
        List<String> order = List.of("null", "boolean", "object", "array", "number", "integer", "string");
        List<String> names = new ArrayList<>();
        for (String name : order) {
            if (types.contains(name)) {
                names.add(name);
            }
        }
        for (String name : types) {
            if (!order.contains(name)) {
                names.add(name);
            }
        }
        return names.size() == 1 ? names.get(0)
                : names.stream().map(n -> "\"" + n + "\"").collect(Collectors.joining(", ", "[", "]"));
    }

    /**
     * What a selected place is, its schemas {@code subs} (closed): a string (or null) that a
     * ciphertext can replace, or else an array or map of such strings (or null).
     *
     * @param at the place, for reasons
     * @param elementsAt its elements or values, for reasons
     * @throws SchemaFieldsException {@code SCHEMA} for anything else
     */
    private Selected selected(List<Sub> subs, String at, String elementsAt, String why) {
        String notString = stringProblem(subs, at, why);
        if (notString == null) {
            return Selected.STRING;
        }
        Selected collection = collection(subs, at, elementsAt, why);
        if (collection == null) {
            throw schemaError(notString);
        }
        return collection;
    }

    /** Why a selected place's schemas do not make it a string (or null) a ciphertext can replace; null if they do. */
    private String stringProblem(List<Sub> subs, String at, String why) {
        Set<String> types = types(subs);
        if (types.isEmpty()) {
            return "field " + at + " is selected (" + why + ") but its schema gives it no type; only string fields, "
                    + "and arrays and maps of them, can be protected, so it must say \"type\": \"string\"";
        }
        if (!types.contains("string") || !Set.of("string", "null").containsAll(types)) {
            return "field " + at + " is selected (" + why + ") but its schema type is " + describe(types)
                    + "; only string fields, and arrays and maps of them, can be protected";
        }
        // A constraint of a schema that allows no string (the null branch of a oneOf)
        // constrains no ciphertext.
        for (Sub sub : subs) {
            Set<String> own = types(sub.node());
            if (own != null && !own.contains("string")) {
                continue;
            }
            for (String keyword : STRING_CONSTRAINTS) {
                if (sub.node().has(keyword)) {
                    return "field " + at + " is selected (" + why + ") but its schema has `" + keyword + "` ("
                            + where(sub.node()) + "): a ciphertext may not satisfy it, so consumers that validate "
                            + "records would refuse the record; remove " + (why.startsWith("tagged") ? "the tag"
                            : "the path") + " or `" + keyword + "`";
                }
            }
        }
        return null;
    }

    /**
     * A selected array of strings ({@code "type": "array"} whose {@code items} are strings),
     * or map of strings ({@code "type": "object"} with no {@code properties}, whose
     * {@code additionalProperties} and any {@code patternProperties} are strings), either
     * perhaps null: each element or value is selected, as a Protobuf tag on a
     * {@code repeated string} field selects each element. Null if the schemas do not make the
     * place an array or such an object.
     *
     * @throws SchemaFieldsException {@code SCHEMA} if its elements or values are not strings a ciphertext can replace
     */
    private Selected collection(List<Sub> subs, String at, String elementsAt, String why) {
        Set<String> types = types(subs);
        Selected kind;
        if (types.contains("array") && Set.of("array", "null").containsAll(types)) {
            kind = Selected.ARRAY;
        } else if (types.contains("object") && Set.of("object", "null").containsAll(types)
                && subs.stream().allMatch(sub -> sub.node().path("properties").isEmpty())) {
            kind = Selected.MAP;
        } else {
            return null;
        }
        // The schemas of the elements or values, and whether some items or
        // additionalProperties describes those no other keyword does.
        List<Sub> schemas = new ArrayList<>();
        boolean described = false;
        for (Sub sub : subs) {
            JsonNode node = sub.node();
            JsonNode rest;
            if (kind == Selected.ARRAY) {
                String restKeyword = "items";
                JsonNode prefix = node.get("prefixItems");
                JsonNode items = node.get("items");
                if (prefix != null) {
                    prefix.forEach(p -> schemas.add(new Sub(p, sub.doc())));
                } else if (items != null && items.isArray()) {
                    items.forEach(p -> schemas.add(new Sub(p, sub.doc())));
                    restKeyword = "additionalItems";
                }
                rest = node.has(restKeyword) ? node.get(restKeyword) : node.get("unevaluatedItems");
                if (node.get("contains") != null) {
                    schemas.add(new Sub(node.get("contains"), sub.doc()));
                }
            } else {
                for (Map.Entry<String, JsonNode> entry : node.path("patternProperties").properties()) {
                    schemas.add(new Sub(entry.getValue(), sub.doc()));
                }
                rest = node.has("additionalProperties") ? node.get("additionalProperties")
                        : node.get("unevaluatedProperties");
            }
            // A boolean schema (true: anything) describes no element.
            if (rest != null && rest.isObject()) {
                schemas.add(new Sub(rest, sub.doc()));
                described = true;
            }
        }
        if (!described) {
            String what = kind == Selected.ARRAY ? "an array" : "an object";
            String keyword = kind == Selected.ARRAY ? "items" : "additionalProperties";
            throw schemaError("field " + at + " is selected (" + why + ") but is " + what + " whose schema ("
                    + where(subs.get(0).node()) + ") has no `" + keyword + "` schema: only string fields, and arrays "
                    + "and maps of them, can be protected, so it must say \"" + keyword + "\": {\"type\": \"string\"}");
        }
        String problem = stringProblem(closure(schemas), elementsAt, why);
        if (problem != null) {
            throw schemaError(problem);
        }
        return kind;
    }

    /** Where a subschema is, for reasons: {@code #/properties/ssn}, {@code customer.json#/$defs/Name}. */
    private String where(JsonNode node) {
        for (Doc doc : docs) {
            String pointer = pointerTo(doc.root(), node, "", 0);
            if (pointer != null) {
                return doc.name() + "#" + pointer;
            }
        }
        return "?";
    }

    private static String pointerTo(JsonNode from, JsonNode node, String pointer, int depth) {
        if (from == node) {
            return pointer;
        }
        if (depth > MAX_DEPTH || !from.isContainerNode()) {
            return null;
        }
        if (from.isObject()) {
            for (Map.Entry<String, JsonNode> entry : from.properties()) {
                StringBuilder child = new StringBuilder(pointer);
                Selection.token(child, entry.getKey());
                String found = pointerTo(entry.getValue(), node, child.toString(), depth + 1);
                if (found != null) {
                    return found;
                }
            }
        } else {
            for (int i = 0; i < from.size(); i++) {
                String found = pointerTo(from.get(i), node, pointer + "/" + i, depth + 1);
                if (found != null) {
                    return found;
                }
            }
        }
        return null;
    }

    /**
     * Every subschema tagged with a selected tag must make its field a string, or an array or
     * map of strings, that a ciphertext can replace: checked once per schema.
     */
    private void checkTagged() {
        for (Doc doc : docs) {
            checkTagged(doc.root(), doc, 0);
        }
    }

    private void checkTagged(JsonNode node, Doc doc, int depth) {
        if (depth > MAX_DEPTH || !node.isContainerNode()) {
            return;
        }
        if (node.isObject() && node.has(TAGS)) {
            List<Sub> subs = closure(List.of(new Sub(node, doc)));
            String tag = selectingTag(List.of(new Sub(node, doc)));
            if (tag != null) {
                selected(subs, "(a subschema tagged " + tag + ")",
                        "(the elements or values of a subschema tagged " + tag + ")", "tagged " + tag);
            }
        }
        if (node.isObject()) {
            for (Map.Entry<String, JsonNode> entry : node.properties()) {
                // Not into values that are data, not schemas.
                if (!Set.of("enum", "const", "default", "examples", TAGS).contains(entry.getKey())) {
                    checkTagged(entry.getValue(), doc, depth + 1);
                }
            }
        } else {
            for (JsonNode child : node) {
                checkTagged(child, doc, depth + 1);
            }
        }
    }

    private Pattern pattern(String regex) {
        return patterns.computeIfAbsent(regex, r -> {
            try {
                return Pattern.compile(r);
            } catch (PatternSyntaxException e) {
                throw schemaError("json schema patternProperties \"" + r + "\" is not a regular expression Java reads");
            }
        });
    }

    // ---- records -------------------------------------------------------------------------

    @Override
    Located locate(byte[] body, int[] messageIndexes) {
        JsonNode value;
        try {
            value = MAPPER.readTree(body);
        } catch (IOException e) {
            throw decodeError("json record does not parse: " + (e instanceof JsonProcessingException j
                    ? j.getOriginalMessage() : e.getMessage()), e);
        }
        if (value == null || value.isMissingNode()) {
            throw decodeError("json record is empty");
        }
        Located located = new Located(value);
        walk(value, closure(List.of(new Sub(main.root(), main))), new ArrayList<>(), "", located, 0);
        return located;
    }

    private interface Setter {
        void set(byte[] plaintext);
    }

    private void place(JsonNode value, List<Sub> subs, List<Step> path, String at, Located out, Setter setter,
                       int depth) {
        List<Sub> all = closure(subs);
        String tag = selectingTag(all);
        String byPath = selection.selectingPath(path);
        if (tag != null || byPath != null) {
            String schemaPath = Selection.render(path);
            String elementsPath = schemaPath.equals("/") ? "/*" : schemaPath + "/*";
            Selected kind = selected(all, schemaPath, elementsPath,
                    tag != null ? "tagged " + tag : "selected by the path " + byPath);
            if (value.isNull()) {
                return;
            }
            switch (kind) {
                case STRING -> {
                    string(value, schemaPath);
                    out.add(new Located.Found(at, schemaPath, false, value.textValue().getBytes(StandardCharsets.UTF_8)),
                            setter::set);
                }
                case ARRAY -> {
                    if (!(value instanceof ArrayNode array)) {
                        throw decodeError("field " + schemaPath + " is selected for protection but holds "
                                + kindOf(value) + ", not an array of strings");
                    }
                    for (int i = 0; i < array.size(); i++) {
                        JsonNode element = array.get(i);
                        if (element.isNull()) {
                            continue;
                        }
                        string(element, elementsPath);
                        int index = i;
                        out.add(new Located.Found(at + "/" + i, elementsPath, false,
                                element.textValue().getBytes(StandardCharsets.UTF_8)),
                                p -> array.set(index, TextNode.valueOf(new String(p, StandardCharsets.UTF_8))));
                    }
                }
                case MAP -> {
                    if (!(value instanceof ObjectNode object)) {
                        throw decodeError("field " + schemaPath + " is selected for protection but holds "
                                + kindOf(value) + ", not an object of strings");
                    }
                    List<String> names = new ArrayList<>();
                    object.fieldNames().forEachRemaining(names::add);
                    for (String name : names) {
                        JsonNode member = object.get(name);
                        if (member.isNull()) {
                            continue;
                        }
                        string(member, elementsPath);
                        out.add(new Located.Found(Selection.child(at, name), elementsPath, false,
                                member.textValue().getBytes(StandardCharsets.UTF_8)),
                                p -> object.set(name, TextNode.valueOf(new String(p, StandardCharsets.UTF_8))));
                    }
                }
            }
            return;
        }
        walk(value, all, path, at, out, depth + 1);
    }

    /** A selected value that must be a string: anything else is refused, never passed on. */
    private static void string(JsonNode value, String schemaPath) {
        if (!value.isTextual()) {
            throw decodeError("field " + schemaPath + " is selected for protection but holds " + kindOf(value)
                    + ", not a string");
        }
    }

    /** What a value is, for reasons. */
    private static String kindOf(JsonNode value) {
        return switch (value.getNodeType()) {
            case STRING -> "a string";
            case OBJECT, POJO -> "an object";
            case ARRAY -> "an array";
            case BOOLEAN -> "a boolean";
            case NULL -> "null";
            case NUMBER -> "a number";
            default -> value.getNodeType().name().toLowerCase(java.util.Locale.ROOT);
        };
    }

    private void walk(JsonNode value, List<Sub> subs, List<Step> path, String at, Located out, int depth) {
        if (depth > MAX_DEPTH) {
            throw decodeError("json record nested too deep");
        }
        if (subs.isEmpty() && !selection.maySelectBelow(path)) {
            return;
        }
        if (value instanceof ObjectNode object) {
            List<String> names = new ArrayList<>();
            object.fieldNames().forEachRemaining(names::add);
            for (String name : names) {
                List<Sub> described = new ArrayList<>();
                boolean named = false;
                boolean other = false;
                for (Sub sub : subs) {
                    JsonNode s = sub.node();
                    JsonNode property = s.path("properties").get(name);
                    boolean matched = false;
                    if (property != null) {
                        described.add(new Sub(property, sub.doc()));
                        named = true;
                        matched = true;
                    }
                    for (Map.Entry<String, JsonNode> entry : s.path("patternProperties").properties()) {
                        if (pattern(entry.getKey()).matcher(name).find()) {
                            described.add(new Sub(entry.getValue(), sub.doc()));
                            matched = true;
                            other = true;
                        }
                    }
                    if (!matched) {
                        for (String keyword : List.of("additionalProperties", "unevaluatedProperties")) {
                            if (s.get(keyword) != null && s.get(keyword).isObject()) {
                                described.add(new Sub(s.get(keyword), sub.doc()));
                                other = true;
                            }
                        }
                    }
                }
                if (!named && !other && !selection.maySelectBelow(path)) {
                    continue;
                }
                Step step = named || !other ? Step.field(name) : Step.MAP_VALUE;
                place(object.get(name), described, Selection.plus(path, step), Selection.child(at, name), out,
                        p -> object.set(name, TextNode.valueOf(new String(p, StandardCharsets.UTF_8))), depth);
            }
        } else if (value instanceof ArrayNode array) {
            for (int i = 0; i < array.size(); i++) {
                List<Sub> described = new ArrayList<>();
                for (Sub sub : subs) {
                    JsonNode s = sub.node();
                    JsonNode prefix = s.get("prefixItems");
                    JsonNode items = s.get("items");
                    int prefixLength = 0;
                    if (prefix != null && prefix.isArray()) {
                        prefixLength = prefix.size();
                        if (i < prefixLength) {
                            described.add(new Sub(prefix.get(i), sub.doc()));
                        }
                    }
                    if (items != null && items.isArray()) {
                        if (i < items.size()) {
                            described.add(new Sub(items.get(i), sub.doc()));
                        } else if (s.get("additionalItems") != null) {
                            described.add(new Sub(s.get("additionalItems"), sub.doc()));
                        }
                    } else if (items != null && i >= prefixLength) {
                        described.add(new Sub(items, sub.doc()));
                    }
                    for (String keyword : List.of("contains", "unevaluatedItems")) {
                        if (s.get(keyword) != null) {
                            described.add(new Sub(s.get(keyword), sub.doc()));
                        }
                    }
                }
                int index = i;
                place(array.get(i), described, Selection.plus(path, Step.ELEMENT), at + "/" + i, out,
                        p -> array.set(index, TextNode.valueOf(new String(p, StandardCharsets.UTF_8))), depth);
            }
        }
    }

    @Override
    byte[] encode(Object value) {
        try {
            return MAPPER.writeValueAsBytes(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }
}
