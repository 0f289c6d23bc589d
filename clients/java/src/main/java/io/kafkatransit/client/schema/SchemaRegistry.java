package io.kafkatransit.client.schema;

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Supplier;
import javax.net.ssl.SSLContext;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.kafkatransit.client.schema.SchemaFieldsException.Reason;

/**
 * A client of a Confluent-compatible Schema Registry (Confluent's, Confluent Cloud, Apicurio
 * Registry's {@code /apis/ccompat/v7}, Karapace, Redpanda): {@code GET /schemas/ids/{id}},
 * then {@code /subjects/{subject}/versions/{version}} for each reference, depth first, each
 * name once. A registry never changes the schema of an id, so schemas are kept by id (up to
 * {@code capacity}, then the cache starts again); an id the registry does not have is
 * answered from memory for 30 s.
 */
public final class SchemaRegistry implements SchemaSource {
    /** Most references one schema may pull in, directly or not. */
    static final int MAX_REFERENCES = 64;
    static final Duration NOT_FOUND_TTL = Duration.ofSeconds(30);
    private static final ObjectMapper JSON = new ObjectMapper();

    private final HttpClient http;
    private final String base;
    private final Supplier<String> authorization;
    private final Duration timeout;
    private final int capacity;
    private final Map<Integer, RegisteredSchema> cache = new ConcurrentHashMap<>();
    private final Map<Integer, Long> missing = new ConcurrentHashMap<>();

    /**
     * @param url the registry's base URL ({@code http://registry:8081},
     *     {@code http://apicurio:8080/apis/ccompat/v7})
     * @param authorization gives the {@code Authorization} header for each request, or null
     * @param tls trusts these certificates for https (null: the JDK's defaults)
     */
    public SchemaRegistry(URI url, Supplier<String> authorization, SSLContext tls, Duration timeout, int capacity) {
        HttpClient.Builder builder = HttpClient.newBuilder().connectTimeout(timeout);
        if (tls != null) {
            builder.sslContext(tls);
        }
        this.http = builder.build();
        this.base = url.toString().replaceAll("/+$", "");
        this.authorization = authorization;
        this.timeout = timeout;
        this.capacity = capacity;
    }

    /** {@code Basic base64(user:password)}. */
    public static String basic(String user, String password) {
        return "Basic " + Base64.getEncoder().encodeToString((user + ":" + password).getBytes(StandardCharsets.UTF_8));
    }

    @Override
    public RegisteredSchema schema(int id) {
        RegisteredSchema cached = cache.get(id);
        if (cached != null) {
            return cached;
        }
        Long since = missing.get(id);
        if (since != null) {
            if (System.nanoTime() - since < NOT_FOUND_TTL.toNanos()) {
                throw unknown(id);
            }
            missing.remove(id);
        }
        JsonNode root = get("/schemas/ids/" + Integer.toUnsignedString(id));
        if (root == null) {
            missing.put(id, System.nanoTime());
            throw unknown(id);
        }
        RegisteredSchema.Type type = type(root, "schema " + Integer.toUnsignedString(id));
        String text = text(root, "schema " + Integer.toUnsignedString(id));
        // Depth first, each name once; then ordered so that each comes after what it references.
        Map<String, RegisteredSchema.Reference> byName = new LinkedHashMap<>();
        fetchReferences(id, root, byName);
        List<RegisteredSchema.Reference> ordered = new ArrayList<>();
        Map<String, Boolean> placed = new HashMap<>();
        for (String name : byName.keySet()) {
            place(name, byName, placed, ordered);
        }
        RegisteredSchema schema = new RegisteredSchema(type, text, ordered);
        if (cache.size() >= capacity) {
            cache.clear();
        }
        cache.put(id, schema);
        return schema;
    }

    private static void place(String name, Map<String, RegisteredSchema.Reference> byName, Map<String, Boolean> placed,
                              List<RegisteredSchema.Reference> ordered) {
        RegisteredSchema.Reference reference = byName.get(name);
        if (reference == null || placed.putIfAbsent(name, Boolean.TRUE) != null) {
            return;
        }
        for (String inner : reference.references()) {
            place(inner, byName, placed, ordered);
        }
        ordered.add(reference);
    }

    private void fetchReferences(int id, JsonNode node, Map<String, RegisteredSchema.Reference> byName) {
        for (JsonNode reference : node.path("references")) {
            String name = reference.path("name").asText();
            String subject = reference.path("subject").asText();
            String version = reference.path("version").asText();
            if (byName.containsKey(name)) {
                continue;
            }
            if (byName.size() == MAX_REFERENCES) {
                throw new SchemaFieldsException(Reason.SCHEMA, "schema " + Integer.toUnsignedString(id)
                        + " references more than " + MAX_REFERENCES + " schemas");
            }
            JsonNode referenced = get("/subjects/" + segment(subject) + "/versions/" + segment(version));
            if (referenced == null) {
                throw new SchemaFieldsException(Reason.REGISTRY, "schema " + Integer.toUnsignedString(id)
                        + " references subject \"" + subject + "\" version " + version
                        + ", which the registry does not have");
            }
            List<String> inner = new ArrayList<>();
            for (JsonNode r : referenced.path("references")) {
                inner.add(r.path("name").asText());
            }
            byName.put(name, new RegisteredSchema.Reference(name, text(referenced, "subject " + subject), inner));
            fetchReferences(id, referenced, byName);
        }
    }

    private static SchemaFieldsException unknown(int id) {
        return new SchemaFieldsException(Reason.UNKNOWN_SCHEMA,
                "the schema registry has no schema with id " + Integer.toUnsignedString(id));
    }

    private static RegisteredSchema.Type type(JsonNode node, String what) {
        String type = node.path("schemaType").asText("AVRO");
        return switch (type.isEmpty() ? "AVRO" : type) {
            case "AVRO" -> RegisteredSchema.Type.AVRO;
            case "PROTOBUF" -> RegisteredSchema.Type.PROTOBUF;
            case "JSON" -> RegisteredSchema.Type.JSON;
            default -> throw new SchemaFieldsException(Reason.SCHEMA, what + " has the unknown schemaType \"" + type + "\"");
        };
    }

    private static String text(JsonNode node, String what) {
        JsonNode schema = node.get("schema");
        if (schema == null || !schema.isTextual()) {
            throw new SchemaFieldsException(Reason.REGISTRY, "the registry's answer for " + what + " has no schema");
        }
        return schema.asText();
    }

    private static String segment(String text) {
        return URLEncoder.encode(text, StandardCharsets.UTF_8).replace("+", "%20");
    }

    /** The answer's JSON, or null for a 404. */
    private JsonNode get(String path) {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(base + path)).timeout(timeout)
                .header("Accept", "application/vnd.schemaregistry.v1+json, application/json").GET();
        if (authorization != null) {
            request.header("Authorization", authorization.get());
        }
        HttpResponse<String> response;
        try {
            response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new SchemaFieldsException(Reason.REGISTRY, "the schema registry at " + base + " is unreachable: " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new SchemaFieldsException(Reason.REGISTRY, "interrupted while asking the schema registry", e);
        }
        int status = response.statusCode();
        if (status == 404) {
            return null;
        }
        if (status == 401 || status == 403) {
            throw new SchemaFieldsException(Reason.REGISTRY, "the schema registry at " + base + " refused the credentials ("
                    + status + "); check kafka.transit.schema.registry.username and its password, or its token");
        }
        if (status / 100 != 2) {
            throw new SchemaFieldsException(Reason.REGISTRY, "the schema registry at " + base + " answered HTTP " + status
                    + " to GET " + path);
        }
        try {
            return JSON.readTree(response.body());
        } catch (IOException e) {
            throw new SchemaFieldsException(Reason.REGISTRY, "the schema registry's answer to GET " + path
                    + " is not JSON", e);
        }
    }

    @Override
    public String toString() {
        return "SchemaRegistry[" + base + "]";
    }
}
