package io.kafkatransit.client;

import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import java.util.stream.Collectors;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

import io.kafkatransit.client.TransitReadException.Reason;

/**
 * Vault's (or OpenBao's) transit engine over {@code java.net.http}: {@code decrypt} always with
 * {@code batch_input}, at most {@value #MAX_BATCH} ciphertexts and {@value #MAX_STRINGS} JSON
 * strings a request (OpenBao refuses request bodies of more than 1000 JSON strings by default,
 * member names included: 250 items without context, fewer with context and associated data),
 * with context and associated data for format 3; and, for writers, {@code datakey/plaintext},
 * {@code encrypt} and {@code hmac}.
 */
public final class VaultTransit implements TransitDecrypter, TransitEncrypter {
    public static final int MAX_BATCH = 250;
    /** Strings a request may hold: OpenBao's 1000, less {@code batch_input} and one to spare. */
    public static final int MAX_STRINGS = 998;

    private final HttpClient http;
    private final URI address;
    private final String mount;
    private final Supplier<String> token;
    private final String namespace;
    private final Duration timeout;

    /**
     * @param token gives the token for each request (read from a file, an agent, ...)
     * @param namespace sent as {@code X-Vault-Namespace} when not null
     * @param tls trusts these certificates for https (null: the JDK's defaults)
     */
    public VaultTransit(URI address, String mount, Supplier<String> token, String namespace, SSLContext tls,
                        Duration timeout) {
        HttpClient.Builder builder = HttpClient.newBuilder().connectTimeout(timeout);
        if (tls != null) {
            builder.sslContext(tls);
        }
        this.http = builder.build();
        this.address = address;
        this.mount = mount;
        this.token = token;
        this.namespace = namespace;
        this.timeout = timeout;
    }

    /** The client {@code config} describes: token from its file or variable, its CA file. */
    public static VaultTransit from(TransitConfig config) {
        Supplier<String> token = config.tokenFile() != null
                ? () -> readToken(config.tokenFile())
                : () -> {
                    String value = System.getenv(config.tokenEnv());
                    if (value == null || value.isBlank()) {
                        throw new TransitReadException(Reason.CONFIG,
                                "no Vault token: the environment variable " + config.tokenEnv() + " is not set");
                    }
                    return value.strip();
                };
        return new VaultTransit(config.address(), config.mount(), token, config.namespace(),
                config.caFile() == null ? null : trusting(config.caFile()), config.timeout());
    }

    private static String readToken(Path file) {
        try {
            return Files.readString(file).strip();
        } catch (IOException e) {
            throw new TransitReadException(Reason.CONFIG, "cannot read the Vault token file " + file + ": " + e);
        }
    }

    /** An SSLContext that trusts the PEM certificates in {@code caFile}. */
    public static SSLContext trusting(Path caFile) {
        try (InputStream in = Files.newInputStream(caFile)) {
            KeyStore store = KeyStore.getInstance(KeyStore.getDefaultType());
            store.load(null, null);
            int n = 0;
            for (Certificate certificate : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                store.setCertificateEntry("ca-" + n++, certificate);
            }
            TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            trust.init(store);
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(null, trust.getTrustManagers(), null);
            return context;
        } catch (IOException | GeneralSecurityException e) {
            throw new IllegalArgumentException("cannot use the CA file " + caFile + ": " + e.getMessage(), e);
        }
    }

    @Override
    public List<Decryption> decrypt(String keyName, List<String> ciphertexts) {
        return decryptItems(keyName, ciphertexts.stream().map(c -> new Item(c, null, null)).toList());
    }

    @Override
    public List<Decryption> decryptItems(String keyName, List<Item> items) {
        // TransitReader only passes checked names; other callers of this public class may not.
        Envelope.checkKeyName(keyName);
        List<Decryption> results = new ArrayList<>(items.size());
        int start = 0;
        while (start < items.size()) {
            int end = start;
            int strings = 0;
            while (end < items.size() && end - start < MAX_BATCH
                    && strings + strings(items.get(end)) <= MAX_STRINGS) {
                strings += strings(items.get(end));
                end++;
            }
            results.addAll(request(keyName, items.subList(start, end)));
            start = end;
        }
        return results;
    }

    /** The JSON strings an item puts in a request: each member's name and its value. */
    static int strings(Item item) {
        return 2 + (item.context() == null ? 0 : 2) + (item.associatedData() == null ? 0 : 2);
    }

    private static String base64(byte[] data) {
        return Base64.getEncoder().encodeToString(data);
    }

    private List<Decryption> request(String keyName, List<Item> chunk) {
        String body = chunk.stream().map(c -> "{\"ciphertext\":" + Json.quote(c.ciphertext())
                        + (c.context() == null ? "" : ",\"context\":" + Json.quote(base64(c.context())))
                        + (c.associatedData() == null ? "" : ",\"associated_data\":"
                                + Json.quote(base64(c.associatedData()))) + "}")
                .collect(Collectors.joining(",", "{\"batch_input\":[", "]}"));
        Answer reply = post("decrypt", keyName, body);
        Object answer = reply.body;
        // Vault answers 400 with per-item errors when some items of a batch fail.
        if (answer instanceof Map<?, ?> top && top.get("data") instanceof Map<?, ?> data
                && data.get("batch_results") instanceof List<?> items && items.size() == chunk.size()) {
            List<Decryption> results = new ArrayList<>(items.size());
            for (Object item : items) {
                Map<?, ?> fields = item instanceof Map<?, ?> m ? m : Map.of();
                Object error = fields.get("error");
                Object plaintext = fields.get("plaintext");
                if (error instanceof String message && !message.isEmpty()) {
                    results.add(new Decryption.Failed(message));
                } else if (plaintext instanceof String text) {
                    results.add(new Decryption.Plaintext(Base64.getDecoder().decode(text)));
                } else {
                    results.add(new Decryption.Failed("no plaintext in Vault's answer"));
                }
            }
            return results;
        }
        if (reply.keyNotFound()) {
            // Vault checks the key before the batch and fails the whole request. Each item is
            // failed instead: the key's absence is an answer about these ciphertexts (a
            // forgotten subject's records), not Vault being unreachable, and the reader
            // reports it per record.
            return Collections.nCopies(chunk.size(), new Decryption.Failed(Decryption.KEY_NOT_FOUND));
        }
        throw reply.failure("decrypt", keyName);
    }

    private record Answer(int status, Object body) {
        /** HTTP 400 {@code {"errors":["encryption key not found"]}}: no such transit key. */
        boolean keyNotFound() {
            return status == 400 && body instanceof Map<?, ?> top && top.get("errors") instanceof List<?> list
                    && list.stream().anyMatch(e -> e instanceof String s && s.contains(Decryption.KEY_NOT_FOUND));
        }

        TransitReadException failure(String operation, String keyName) {
            String errors = body instanceof Map<?, ?> top && top.get("errors") instanceof List<?> list
                    ? list.toString() : "no data";
            return new TransitReadException(Reason.VAULT,
                    "Vault answered HTTP " + status + " to transit/" + operation + "/" + keyName + ": " + errors);
        }

        Map<?, ?> data(String operation, String keyName) {
            if (status < 300 && body instanceof Map<?, ?> top && top.get("data") instanceof Map<?, ?> data) {
                return data;
            }
            throw failure(operation, keyName);
        }
    }

    private Answer post(String operation, String keyName, String body) {
        Envelope.checkKeyName(keyName);
        URI uri = URI.create(address + "/v1/" + path(mount) + "/" + operation + "/" + keyName);
        HttpRequest.Builder request = HttpRequest.newBuilder(uri).timeout(timeout)
                .header("Content-Type", "application/json")
                .header("X-Vault-Token", token.get())
                .POST(HttpRequest.BodyPublishers.ofString(body));
        if (namespace != null && !namespace.isEmpty()) {
            request.header("X-Vault-Namespace", namespace);
        }
        HttpResponse<String> response;
        try {
            response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new TransitReadException(Reason.VAULT, "Vault at " + address + " is unreachable: " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new TransitReadException(Reason.VAULT, "interrupted while asking Vault", e);
        }
        Object answer;
        try {
            answer = Json.parse(response.body());
        } catch (IllegalArgumentException e) {
            answer = null;
        }
        return new Answer(response.statusCode(), answer);
    }

    @Override
    public DataKey dataKey(String keyName) {
        Map<?, ?> data = post("datakey/plaintext", keyName, "{}").data("datakey/plaintext", keyName);
        if (data.get("plaintext") instanceof String plaintext && data.get("ciphertext") instanceof String wrapped) {
            return new DataKey(Base64.getDecoder().decode(plaintext), wrapped);
        }
        throw new TransitReadException(Reason.VAULT, "Vault's datakey answer has no plaintext or ciphertext");
    }

    @Override
    public String encrypt(String keyName, byte[] plaintext, byte[] context, byte[] associatedData) {
        String body = "{\"plaintext\":" + Json.quote(base64(plaintext))
                + (context == null ? "" : ",\"context\":" + Json.quote(base64(context)))
                + (associatedData == null ? "" : ",\"associated_data\":" + Json.quote(base64(associatedData))) + "}";
        if (post("encrypt", keyName, body).data("encrypt", keyName).get("ciphertext") instanceof String ciphertext) {
            return ciphertext;
        }
        throw new TransitReadException(Reason.VAULT, "Vault's encrypt answer has no ciphertext");
    }

    @Override
    public String hmac(String keyName, byte[] input) {
        String body = "{\"input\":" + Json.quote(base64(input)) + "}";
        if (post("hmac", keyName, body).data("hmac", keyName).get("hmac") instanceof String hmac) {
            return hmac;
        }
        throw new TransitReadException(Reason.VAULT, "Vault's hmac answer has no hmac");
    }

    private static String path(String segments) {
        return Arrays.stream(segments.split("/"))
                .map(s -> URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20"))
                .collect(Collectors.joining("/"));
    }

    @Override
    public String toString() {
        return "VaultTransit[" + address + ", mount=" + mount + (namespace == null ? "" : ", namespace=" + namespace) + "]";
    }
}
