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
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

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
 * string (or null); {@code $dynamicRef} and {@code $recursiveRef} are refused.
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

    /** A selected place's schemas must make it a string (or null). */
    private void checkString(List<Sub> subs, String at, String why) {
        Set<String> types = new LinkedHashSet<>();
        for (Sub sub : subs) {
            JsonNode type = sub.node().get("type");
            if (type != null && type.isTextual()) {
                types.add(type.asText());
            } else if (type != null && type.isArray()) {
                type.forEach(t -> types.add(t.asText()));
            }
        }
        if (types.isEmpty()) {
            throw schemaError("field " + at + " is selected (" + why + ") but its schema gives it no type; only string "
                    + "fields can be protected, so it must say \"type\": \"string\"");
        }
        if (!types.contains("string") || !Set.of("string", "null").containsAll(types)) {
            throw schemaError("field " + at + " is selected (" + why + ") but its schema type is " + types
                    + "; only string fields can be protected");
        }
    }

    /** Every subschema tagged with a selected tag must make its field a string: checked once per schema. */
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
                checkString(subs, "(a subschema tagged " + tag + ")", "tagged " + tag);
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
            checkString(all, schemaPath, tag != null ? "tagged " + tag : "selected by the path " + byPath);
            if (value.isNull()) {
                return;
            }
            if (!value.isTextual()) {
                throw decodeError("field " + schemaPath + " is selected but holds " + value.getNodeType().name()
                        .toLowerCase(java.util.Locale.ROOT) + ", not a string");
            }
            out.add(new Located.Found(at, schemaPath, false, value.textValue().getBytes(StandardCharsets.UTF_8)),
                    setter::set);
            return;
        }
        walk(value, all, path, at, out, depth + 1);
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
