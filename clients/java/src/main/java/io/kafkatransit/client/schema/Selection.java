package io.kafkatransit.client.schema;

import java.util.ArrayList;
import java.util.List;

/**
 * Which fields are protected: any field whose schema carries one of {@code tags}
 * (Confluent's {@code confluent:tags}), and any field at one of the configured paths:
 * JSON Pointers over the record's shape by schema field names ({@code /customer/ssn}),
 * {@code *} for every element of an array, every value of a map or every field of a
 * record ({@code /phones/*}{@code /number}). A union or {@code oneof} adds no step. The
 * same rules as the runner's {@code encrypt-schema-fields} (docs/schema-fields.md).
 */
public final class Selection {
    /** One step from a record's root to a field, in schema terms. */
    public record Step(Kind kind, String name) {
        public enum Kind { FIELD, ELEMENT, MAP_VALUE }

        public static final Step ELEMENT = new Step(Kind.ELEMENT, null);
        public static final Step MAP_VALUE = new Step(Kind.MAP_VALUE, null);

        public static Step field(String name) {
            return new Step(Kind.FIELD, name);
        }
    }

    /** A configured path: its tokens, null for {@code *}. */
    private record Pattern(String text, List<String> tokens) {
        boolean prefixMatches(List<Step> path) {
            for (int i = 0; i < path.size(); i++) {
                String token = tokens.get(i);
                Step step = path.get(i);
                if (token != null && !(step.kind() == Step.Kind.FIELD && step.name().equals(token))) {
                    return false;
                }
            }
            return true;
        }

        boolean matches(List<Step> path) {
            return tokens.size() == path.size() && prefixMatches(path);
        }

        boolean mayExtend(List<Step> path) {
            return tokens.size() > path.size() && prefixMatches(path);
        }
    }

    private final List<String> tags;
    private final List<Pattern> patterns;

    /**
     * @param tags the schema tags that select a field (e.g. {@code PII})
     * @param paths configured field paths ({@code /customer/ssn}, {@code /phones/*}{@code /number})
     * @throws IllegalArgumentException for a path that is not a JSON Pointer
     */
    public Selection(List<String> tags, List<String> paths) {
        this.tags = List.copyOf(tags);
        List<Pattern> parsed = new ArrayList<>();
        for (String path : paths) {
            parsed.add(parse(path));
        }
        this.patterns = List.copyOf(parsed);
    }

    private static Pattern parse(String text) {
        if (!text.startsWith("/")) {
            throw new IllegalArgumentException("field path \"" + text
                    + "\" must start with \"/\" (a JSON Pointer such as \"/customer/ssn\")");
        }
        List<String> tokens = new ArrayList<>();
        for (String raw : text.substring(1).split("/", -1)) {
            if (raw.equals("*")) {
                tokens.add(null);
                continue;
            }
            StringBuilder name = new StringBuilder();
            for (int i = 0; i < raw.length(); i++) {
                char c = raw.charAt(i);
                if (c != '~') {
                    name.append(c);
                } else if (i + 1 < raw.length() && (raw.charAt(i + 1) == '0' || raw.charAt(i + 1) == '1')) {
                    name.append(raw.charAt(++i) == '0' ? '~' : '/');
                } else {
                    throw new IllegalArgumentException("field path \"" + text
                            + "\": `~` must be followed by 0 or 1 (`~0` is `~`, `~1` is `/`)");
                }
            }
            tokens.add(name.toString());
        }
        return new Pattern(text, java.util.Collections.unmodifiableList(tokens));
    }

    public List<String> tags() {
        return tags;
    }

    /** The first of {@code fieldTags} that this selection selects by, or null. */
    public String selectingTag(List<String> fieldTags) {
        for (String tag : fieldTags) {
            if (tags.contains(tag)) {
                return tag;
            }
        }
        return null;
    }

    /** Whether the field at {@code path} carrying {@code fieldTags} is selected. */
    public boolean selects(List<Step> path, List<String> fieldTags) {
        return selectingTag(fieldTags) != null || selectsPath(path);
    }

    /** The configured path that selects {@code path}, or null. */
    public String selectingPath(List<Step> path) {
        for (Pattern p : patterns) {
            if (p.matches(path)) {
                return p.text();
            }
        }
        return null;
    }

    public boolean selectsPath(List<Step> path) {
        return selectingPath(path) != null;
    }

    /** Whether a configured path could select something below {@code path} (tags aside). */
    public boolean maySelectBelow(List<Step> path) {
        for (Pattern p : patterns) {
            if (p.mayExtend(path)) {
                return true;
            }
        }
        return false;
    }

    /** Why a field is selected, for reasons: {@code tagged PII} or {@code at the path /x}. */
    String why(List<Step> path, List<String> fieldTags) {
        String tag = selectingTag(fieldTags);
        return tag != null ? "tagged " + tag : "selected by the path " + selectingPath(path);
    }

    /** A schema path for reasons: field names, {@code *} for elements and map values. */
    static String render(List<Step> path) {
        StringBuilder out = new StringBuilder();
        for (Step step : path) {
            if (step.kind() == Step.Kind.FIELD) {
                token(out, step.name());
            } else {
                out.append("/*");
            }
        }
        return out.length() == 0 ? "/" : out.toString();
    }

    /** Appends one RFC 6901 reference token ({@code ~} as {@code ~0}, {@code /} as {@code ~1}). */
    static void token(StringBuilder path, String name) {
        path.append('/');
        for (int i = 0; i < name.length(); i++) {
            char c = name.charAt(i);
            if (c == '~') {
                path.append("~0");
            } else if (c == '/') {
                path.append("~1");
            } else {
                path.append(c);
            }
        }
    }

    static String child(String path, String name) {
        StringBuilder out = new StringBuilder(path);
        token(out, name);
        return out.toString();
    }

    static List<Step> plus(List<Step> path, Step step) {
        List<Step> out = new ArrayList<>(path.size() + 1);
        out.addAll(path);
        out.add(step);
        return out;
    }

    @Override
    public String toString() {
        return "Selection[tags=" + tags + ", fields=" + patterns.stream().map(Pattern::text).toList() + "]";
    }
}
