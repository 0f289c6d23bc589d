package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import com.sun.net.httpserver.HttpServer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * OpenBao refuses a request body of more than 1000 JSON strings ("refused JSON input due to
 * high complexity"), member names included: batches are cut by strings, not only by items.
 */
class VaultBatchTest {
    private final List<Integer> itemsPerRequest = new CopyOnWriteArrayList<>();
    private HttpServer server;
    private VaultTransit vault;

    @BeforeEach
    void start() throws IOException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/", exchange -> {
            String body = new String(exchange.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
            long strings = body.chars().filter(c -> c == '"').count() / 2;
            int items = body.split("\"ciphertext\"", -1).length - 1;
            String answer;
            int status;
            if (strings > 1000) {
                status = 400;
                answer = "{\"errors\":[\"refused JSON input due to high complexity: exceeded maximum number of strings\"]}";
            } else {
                itemsPerRequest.add(items);
                status = 200;
                answer = "{\"data\":{\"batch_results\":["
                        + String.join(",", java.util.Collections.nCopies(items, "{\"plaintext\":\"AA==\"}")) + "]}}";
            }
            byte[] bytes = answer.getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(status, bytes.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(bytes);
            }
        });
        server.start();
        vault = new VaultTransit(URI.create("http://127.0.0.1:" + server.getAddress().getPort()), "transit",
                () -> "s.reader-token", null, null, Duration.ofSeconds(5));
    }

    @AfterEach
    void stop() {
        server.stop(0);
    }

    private static List<TransitDecrypter.Item> items(int count, boolean context, boolean associatedData) {
        List<TransitDecrypter.Item> items = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            items.add(new TransitDecrypter.Item("vault:v1:AAAA", context ? new byte[] {1} : null,
                    associatedData ? new byte[] {2} : null));
        }
        return items;
    }

    @Test
    void requestsStayWithinOpenBaosStringLimitWhateverEachItemCarries() {
        for (boolean context : new boolean[] {false, true}) {
            for (boolean associatedData : new boolean[] {false, true}) {
                itemsPerRequest.clear();
                List<Decryption> results = vault.decryptItems("customers", items(1000, context, associatedData));
                assertEquals(1000, results.size());
                assertTrue(results.stream().allMatch(r -> r instanceof Decryption.Plaintext),
                        "context " + context + ", associated data " + associatedData + ": " + results.get(0));
                assertEquals(1000, itemsPerRequest.stream().mapToInt(Integer::intValue).sum());
                int perItem = 2 + (context ? 2 : 0) + (associatedData ? 2 : 0);
                assertEquals(Math.min(VaultTransit.MAX_BATCH, VaultTransit.MAX_STRINGS / perItem),
                        itemsPerRequest.get(0), "as many items as fit");
            }
        }
    }
}
