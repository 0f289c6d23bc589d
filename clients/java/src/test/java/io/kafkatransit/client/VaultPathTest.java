package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

import com.sun.net.httpserver.HttpServer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import io.kafkatransit.client.TransitReadException.Reason;

/**
 * An envelope names the transit key its data key is unwrapped with, and the reader asks
 * {@code transit/decrypt/<key name>} with its token: the record must not choose the path.
 */
class VaultPathTest {
    private static final Vectors.Sealed HELLO_V2 = Vectors.sealed().get(3);
    private final List<String> paths = new CopyOnWriteArrayList<>();
    private HttpServer server;
    private VaultTransit vault;

    @BeforeEach
    void start() throws IOException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/", exchange -> {
            paths.add(exchange.getRequestURI().getRawPath());
            byte[] answer = "{\"data\":{\"batch_results\":[{\"plaintext\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}]}}"
                    .getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, answer.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(answer);
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

    /** The "hello (v2)" vector sealed again under {@code keyName}, with a valid tag. */
    static byte[] sealedUnder(String keyName) throws GeneralSecurityException {
        Envelope hello = Envelope.parse(HELLO_V2.envelope());
        byte[] name = keyName.getBytes(StandardCharsets.UTF_8);
        byte[] wrapped = hello.wrappedKey().getBytes(StandardCharsets.US_ASCII);
        byte[] head = new byte[3 + name.length];
        head[0] = Envelope.FORMAT_VERSION;
        head[1] = (byte) (name.length >> 8);
        head[2] = (byte) name.length;
        System.arraycopy(name, 0, head, 3, name.length);
        Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
        cipher.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(HELLO_V2.dataKey(), "AES"),
                new GCMParameterSpec(128, hello.nonce()));
        cipher.updateAAD(head);
        byte[] sealed = cipher.doFinal(HELLO_V2.plaintext());
        byte[] out = new byte[head.length + 2 + wrapped.length + hello.nonce().length + sealed.length];
        int at = 0;
        for (byte[] part : new byte[][] {head, {(byte) (wrapped.length >> 8), (byte) wrapped.length}, wrapped,
                hello.nonce(), sealed}) {
            System.arraycopy(part, 0, out, at, part.length);
            at += part.length;
        }
        return out;
    }

    @Test
    void anEnvelopeNamingNoTransitKeyNeverReachesVault() throws GeneralSecurityException {
        List<String> wrong = new ArrayList<>();
        try (TransitReader reader = new TransitReader(vault, null, 10)) {
            for (String keyName : List.of("..", "../../sys/seal", "team/tenant-a", ".", "a b", "")) {
                TransitReader.Outcome outcome = reader.readAll(List.of(sealedUnder(keyName))).get(0);
                if (!(outcome instanceof TransitReader.Outcome.Failed failed)
                        || failed.error().reason() != Reason.KEY_NAME) {
                    wrong.add(keyName + ": " + outcome);
                    continue;
                }
                String message = failed.error().getMessage();
                // "." and ".." are in the rule's own words; any other name must not appear at all.
                assertFalse(keyName.length() > 2 && message.contains(keyName)
                        || message.contains("\"" + keyName + "\""), message);
            }
        }
        paths.forEach(path -> wrong.add("asked Vault at " + path));
        assertEquals(List.of(), wrong);
    }

    @Test
    void theHttpClientChecksTheNamesItIsGivenToo() {
        TransitReadException error = assertThrows(TransitReadException.class,
                () -> vault.decrypt("../sys/seal", List.of("vault:v1:AAAA")));
        assertEquals(Reason.KEY_NAME, error.reason());
        assertEquals(List.of(), paths);
        assertEquals(1, vault.decrypt("customers", List.of("vault:v1:AAAA")).size());
        assertEquals(List.of("/v1/transit/decrypt/customers"), paths);
    }
}
