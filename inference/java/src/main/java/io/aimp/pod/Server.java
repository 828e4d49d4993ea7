package io.aimp.pod;

import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.zip.DeflaterOutputStream;
import java.util.zip.GZIPInputStream;
import java.util.zip.GZIPOutputStream;
import java.util.zip.InflaterInputStream;
import java.util.zip.ZipException;

/**
 * Wires the {@link Protocol} to the JDK's HttpServer: a bounded worker pool, request bodies read
 * within a size limit (gzip and deflate bodies decompressed), compressed responses where the client
 * accepts them, and a drain on stop that lets in-flight requests finish.
 */
public final class Server {

    /** Responses smaller than this are sent uncompressed even when the client accepts gzip. */
    private static final int COMPRESS_MIN_BYTES = 1024;

    private final Options options;
    private final Protocol protocol;
    private final Gate gate;
    private final JsonLog log;
    private final ThreadPoolExecutor workers;
    private HttpServer http;

    Server(Options options, Protocol protocol, Gate gate, JsonLog log) {
        this.options = options;
        this.protocol = protocol;
        this.gate = gate;
        this.log = log;
        this.workers = new ThreadPoolExecutor(options.threads(), options.threads(), 0L, TimeUnit.MILLISECONDS,
                new ArrayBlockingQueue<>(options.queue()), named("aimp-worker-"),
                new ThreadPoolExecutor.CallerRunsPolicy());
    }

    /** Binds the port and starts serving; returns the bound port. */
    synchronized int start() throws IOException {
        // The JDK server writes headers and body separately; with Nagle's algorithm on, a client
        // that delays its ACKs stalls every small response by ~40 ms. Read once, at first use.
        System.setProperty("sun.net.httpserver.nodelay", "true");
        HttpServer server = HttpServer.create(new InetSocketAddress(options.host(), options.port()), 1024);
        server.createContext("/", this::handle);
        server.setExecutor(workers);
        server.start();
        http = server;
        return server.getAddress().getPort();
    }

    /**
     * Stops taking requests, waits up to the grace period for those in flight, then closes the
     * listener and the workers; returns how many requests were still running when it gave up.
     */
    synchronized int stop() {
        int abandoned;
        try {
            abandoned = gate.closeAndDrain(options.graceSeconds() * 1000L);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            abandoned = -1;
        }
        if (http != null) {
            http.stop(0);
        }
        workers.shutdown();
        try {
            workers.awaitTermination(1, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return abandoned;
    }

    private void handle(HttpExchange exchange) {
        try {
            String rawPath = exchange.getRequestURI().getPath();
            String path = rawPath == null ? "" : rawPath;
            if (!gate.enter()) {
                // Draining: health checks still answer (ready says 503), everything else is refused.
                Response refusal = path.startsWith("/v2/health/")
                        ? protocol.handle(new Request(exchange.getRequestMethod(), path, Map.of(), new byte[0]))
                        : Response.error(503, "server is shutting down; retry on another instance",
                                Map.of("Retry-After", "1", "Connection", "close"));
                send(exchange, refusal);
                return;
            }
            try {
                send(exchange, serve(exchange, path));
            } finally {
                gate.exit();
            }
        } catch (IOException e) {
            // The client went away mid-exchange; nothing left to answer.
        } catch (RuntimeException | Error e) {
            log.error("request failed", "method", exchange.getRequestMethod(),
                    "path", String.valueOf(exchange.getRequestURI()), "error", e.toString());
            try {
                send(exchange, Response.error(500, "internal error: " + e.getClass().getSimpleName()));
            } catch (IOException | RuntimeException ignored) {
                // Headers were already sent; closing the exchange below ends the response.
            }
        } finally {
            exchange.close();
        }
    }

    private Response serve(HttpExchange exchange, String path) throws IOException {
        Map<String, String> headers = new HashMap<>();
        for (Map.Entry<String, List<String>> h : exchange.getRequestHeaders().entrySet()) {
            if (!h.getValue().isEmpty()) {
                headers.put(h.getKey().toLowerCase(Locale.ROOT), h.getValue().get(0));
            }
        }
        byte[] body;
        try {
            body = readBody(exchange.getRequestBody(), headers);
        } catch (ProtocolException e) {
            return e.response();
        }
        String method = exchange.getRequestMethod().toUpperCase(Locale.ROOT);
        Response response = protocol.handle(new Request(method, path, headers, body));
        if (response.status() >= 500) {
            log.error("request failed", "method", method, "path", path, "status", response.status(),
                    "error", new String(response.body(), StandardCharsets.UTF_8));
        }
        return compress(response, headers.get("accept-encoding"));
    }

    private byte[] readBody(InputStream raw, Map<String, String> headers) throws IOException {
        long limit = options.maxBodyBytes();
        String length = headers.get("content-length");
        if (length != null) {
            try {
                if (Long.parseLong(length.trim()) > limit) {
                    throw tooLarge(limit);
                }
            } catch (NumberFormatException e) {
                throw ProtocolException.badRequest("Content-Length '" + length + "' is not a number");
            }
        }
        String encoding = headers.getOrDefault("content-encoding", "identity").trim().toLowerCase(Locale.ROOT);
        InputStream in = switch (encoding) {
            case "identity", "" -> raw;
            case "gzip" -> new GZIPInputStream(raw);
            case "deflate" -> new InflaterInputStream(raw);
            default -> throw new ProtocolException(415, "Content-Encoding '" + encoding
                    + "' is not supported; use gzip, deflate or none");
        };
        try {
            byte[] body = in.readNBytes((int) Math.min(Integer.MAX_VALUE - 8, limit + 1));
            if (body.length > limit) {
                throw tooLarge(limit);
            }
            return body;
        } catch (ZipException e) {
            throw ProtocolException.badRequest("the " + encoding + " request body is corrupt: " + e.getMessage());
        }
    }

    private static ProtocolException tooLarge(long limit) {
        return new ProtocolException(413, "the request body exceeds " + (limit >> 20)
                + " MiB; split the batch or start the pod with a larger --max-body-mib");
    }

    private static Response compress(Response response, String acceptEncoding) throws IOException {
        if (acceptEncoding == null || response.body().length < COMPRESS_MIN_BYTES) {
            return response;
        }
        String accepted = acceptEncoding.toLowerCase(Locale.ROOT);
        String encoding = accepted.contains("gzip") ? "gzip" : accepted.contains("deflate") ? "deflate" : null;
        if (encoding == null) {
            return response;
        }
        ByteArrayOutputStream packed = new ByteArrayOutputStream(response.body().length / 4 + 64);
        try (OutputStream out = encoding.equals("gzip") ? new GZIPOutputStream(packed) : new DeflaterOutputStream(packed)) {
            out.write(response.body());
        }
        Map<String, String> headers = new HashMap<>(response.headers());
        headers.put("Content-Encoding", encoding);
        return new Response(response.status(), response.contentType(), headers, packed.toByteArray());
    }

    private static void send(HttpExchange exchange, Response response) throws IOException {
        Headers headers = exchange.getResponseHeaders();
        headers.set("Content-Type", response.contentType());
        response.headers().forEach(headers::set);
        boolean head = exchange.getRequestMethod().equalsIgnoreCase("HEAD");
        byte[] body = response.body();
        exchange.sendResponseHeaders(response.status(), head || body.length == 0 ? -1 : body.length);
        if (!head && body.length > 0) {
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        }
    }

    private static ThreadFactory named(String prefix) {
        AtomicInteger count = new AtomicInteger();
        return task -> {
            Thread thread = new Thread(task, prefix + count.incrementAndGet());
            thread.setDaemon(false);
            return thread;
        };
    }
}
