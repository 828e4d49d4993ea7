package io.aimp.pod;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

/**
 * The pod's command line: {@code --model-file PATH --name NAME --port PORT [--host 127.0.0.1]}
 * and tuning flags, each also accepted as {@code --flag=value}.
 *
 * @param modelFile the portable JSON model file
 * @param name the model name served under /v2/models/{name}
 * @param host the address to listen on
 * @param port the TCP port (0: the OS picks one, logged at start)
 * @param threads worker threads; the work is CPU-bound, so a small multiple of the cores
 * @param queue requests waiting for a worker before the acceptor itself runs them (backpressure)
 * @param graceSeconds how long SIGTERM waits for in-flight requests before stopping
 * @param maxBodyBytes the largest request body accepted, after decompression
 */
public record Options(Path modelFile, String name, String host, int port, int threads, int queue,
        int graceSeconds, long maxBodyBytes) {

    public static final String USAGE = """
            usage: aimp-java-pod --model-file PATH --name NAME --port PORT [--host 127.0.0.1]
                                 [--threads N] [--queue N] [--grace-seconds S] [--max-body-mib M]
            Serves one aimp-sklearn-json/1 model over the Open Inference Protocol (KServe v2, HTTP).
            """;

    /** Parses {@code args}; throws IllegalArgumentException saying what is wrong. */
    public static Options parse(String[] args) {
        Map<String, String> values = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (!arg.startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument '" + arg + "'");
            }
            String key;
            String value;
            int eq = arg.indexOf('=');
            if (eq > 0) {
                key = arg.substring(2, eq);
                value = arg.substring(eq + 1);
            } else {
                key = arg.substring(2);
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException("--" + key + " needs a value");
                }
                value = args[++i];
            }
            if (!KNOWN.containsKey(key)) {
                throw new IllegalArgumentException("unknown option --" + key);
            }
            values.put(key, value);
        }
        for (String required : new String[] {"model-file", "name", "port"}) {
            if (!values.containsKey(required)) {
                throw new IllegalArgumentException("--" + required + " is required");
            }
        }
        String name = values.get("name");
        if (name.isEmpty() || name.contains("/")) {
            throw new IllegalArgumentException("--name must be non-empty and contain no '/'");
        }
        return new Options(
                Path.of(values.get("model-file")),
                name,
                values.getOrDefault("host", KNOWN.get("host")),
                number(values, "port", 0, 65535),
                number(values, "threads", 1, 1024),
                number(values, "queue", 1, 1_000_000),
                number(values, "grace-seconds", 0, 3600),
                number(values, "max-body-mib", 1, 2047) * 1024L * 1024L);
    }

    /** Option names with their defaults (empty: required, checked in parse). */
    private static final Map<String, String> KNOWN = Map.of(
            "model-file", "",
            "name", "",
            "port", "",
            "host", "127.0.0.1",
            // Requests are short CPU-bound computations plus socket I/O; twice the cores keeps
            // every core busy while some threads wait on slow clients.
            "threads", Integer.toString(Math.max(4, 2 * Runtime.getRuntime().availableProcessors())),
            // Enough to absorb a burst from a gateway's connection pool; beyond it the acceptor
            // runs requests itself, which pushes back on clients through the TCP backlog.
            "queue", "256",
            // The platform's contract: finish in-flight work within about 5 s of SIGTERM.
            "grace-seconds", "5",
            // Roughly a million FP64 values in JSON; larger batches should be split.
            "max-body-mib", "64");

    private static int number(Map<String, String> values, String key, int min, int max) {
        String text = values.getOrDefault(key, KNOWN.get(key));
        int value;
        try {
            value = Integer.parseInt(text);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + key + " must be an integer, got '" + text + "'", e);
        }
        if (value < min || value > max) {
            throw new IllegalArgumentException("--" + key + " must lie in [" + min + ", " + max + "], got " + value);
        }
        return value;
    }
}
