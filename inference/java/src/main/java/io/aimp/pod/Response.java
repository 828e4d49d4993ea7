package io.aimp.pod;

import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * One HTTP response as the protocol produces it.
 *
 * @param status the HTTP status code
 * @param contentType the Content-Type header
 * @param headers further headers
 * @param body the body bytes
 */
public record Response(int status, String contentType, Map<String, String> headers, byte[] body) {

    public static final String JSON = "application/json";

    public Response {
        headers = Map.copyOf(headers);
    }

    public static Response json(int status, byte[] body) {
        return new Response(status, JSON, Map.of(), body);
    }

    /** The protocol's error body {@code {"error": message}}. */
    public static Response error(int status, String message) {
        return error(status, message, Map.of());
    }

    public static Response error(int status, String message, Map<String, String> headers) {
        byte[] body = ("{\"error\":" + Json.quote(message) + "}").getBytes(StandardCharsets.UTF_8);
        return new Response(status, JSON, headers, body);
    }
}
