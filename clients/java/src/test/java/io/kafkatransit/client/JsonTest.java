package io.kafkatransit.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;

class JsonTest {
    @Test
    void parsesVaultAnswers() {
        Object answer = Json.parse("{\"data\":{\"batch_results\":[{\"plaintext\":\"aGk=\"},"
                + "{\"error\":\"cipher: \\\"bad\\\"\\u0021\"}]},\"warnings\":null,\"renewable\":false,\"lease\":0}");
        Map<?, ?> data = (Map<?, ?>) ((Map<?, ?>) answer).get("data");
        List<?> items = (List<?>) data.get("batch_results");
        assertEquals("aGk=", ((Map<?, ?>) items.get(0)).get("plaintext"));
        assertEquals("cipher: \"bad\"!", ((Map<?, ?>) items.get(1)).get("error"));
        assertThrows(IllegalArgumentException.class, () -> Json.parse("{\"a\":1} x"));
        assertThrows(IllegalArgumentException.class, () -> Json.parse("<html>"));
    }

    @Test
    void quotesStrings() {
        assertEquals("\"a\\\"b\\\\c\\n\\u0001\"", Json.quote("a\"b\\c\n\u0001"));
        assertEquals("a\"b", Json.parse(Json.quote("a\"b")));
    }
}
