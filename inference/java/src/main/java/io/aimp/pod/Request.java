package io.aimp.pod;

import java.util.Locale;
import java.util.Map;

/**
 * One HTTP request as the protocol sees it, free of any server library.
 *
 * @param method the HTTP method, upper case
 * @param path the decoded path without the query string
 * @param headers header values by lower-case name (the first value where a header repeats)
 * @param body the request body, already decompressed
 */
public record Request(String method, String path, Map<String, String> headers, byte[] body) {

    public Request {
        headers = Map.copyOf(headers);
    }

    /** The header's value, or null; {@code name} in any case. */
    public String header(String name) {
        return headers.get(name.toLowerCase(Locale.ROOT));
    }
}
