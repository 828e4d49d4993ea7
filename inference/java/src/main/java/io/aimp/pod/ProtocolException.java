package io.aimp.pod;

import java.util.Map;

/** A request the protocol refuses: the HTTP status and the {@code {"error"}} text to answer with. */
public final class ProtocolException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    private final int status;
    private final transient Map<String, String> headers;

    public ProtocolException(int status, String message) {
        this(status, message, Map.of());
    }

    public ProtocolException(int status, String message, Map<String, String> headers) {
        super(message);
        this.status = status;
        this.headers = Map.copyOf(headers);
    }

    public int status() {
        return status;
    }

    /** The error response this exception stands for. */
    public Response response() {
        return Response.error(status, getMessage(), headers);
    }

    public static ProtocolException badRequest(String message) {
        return new ProtocolException(400, message);
    }

    public static ProtocolException notFound(String message) {
        return new ProtocolException(404, message);
    }

    /** 405, with the Allow header naming the method the route takes. */
    public static ProtocolException methodNotAllowed(String message, String allowed) {
        return new ProtocolException(405, message, Map.of("Allow", allowed));
    }
}
