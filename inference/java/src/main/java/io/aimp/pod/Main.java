package io.aimp.pod;

import java.io.IOException;
import java.lang.management.ManagementFactory;

/**
 * The pod's entry point: reads the command line, loads the model (a bad file stops the pod with
 * exit code 1 and a message naming it), serves until SIGTERM, then drains and exits 0.
 */
public final class Main {

    /** Exit code for a bad command line. */
    static final int EXIT_USAGE = 2;
    /** Exit code for a model file that cannot be used or a port that cannot be bound. */
    static final int EXIT_FAILURE = 1;

    /** What the shutdown hook exits with: 0 for a requested stop, else the failure's code. */
    private static volatile int exitStatus = 0;

    private Main() {}

    public static void main(String[] args) {
        long startNanos = System.nanoTime();
        JsonLog log = new JsonLog(System.out, Protocol.SERVER_NAME);
        if (args.length == 1 && (args[0].equals("--help") || args[0].equals("-h"))) {
            System.out.print(Options.USAGE);
            return;
        }
        Options options;
        try {
            options = Options.parse(args);
        } catch (IllegalArgumentException e) {
            fail(log, EXIT_USAGE, "bad command line: " + e.getMessage() + "\n" + Options.USAGE);
            return;
        }
        LoadedModel model;
        try {
            model = new ModelLoader(Json.MAPPER).load(options.modelFile());
        } catch (ModelFileException e) {
            fail(log, EXIT_FAILURE, e.getMessage());
            return;
        }
        Gate gate = new Gate();
        Protocol protocol = new Protocol(options.name(), model, gate::isOpen);
        Server server = new Server(options, protocol, gate, log);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> shutdown(server, log), "aimp-shutdown"));
        int port;
        try {
            port = server.start();
        } catch (IOException | RuntimeException e) {
            fail(log, EXIT_FAILURE, "cannot listen on " + options.host() + ":" + options.port() + ": " + e);
            return;
        }
        Model evaluator = model.model();
        log.info("pod started",
                "event", "start",
                "model", options.name(),
                "model_file", options.modelFile().toString(),
                "kind", evaluator.kind(),
                "n_features", evaluator.featureCount(),
                "n_classes", evaluator.classCount(),
                "classes", model.classes(),
                "host", options.host(),
                "port", port,
                "threads", options.threads(),
                "pid", ProcessHandle.current().pid(),
                "startup_ms", (System.nanoTime() - startNanos) / 1_000_000L,
                "jvm_uptime_ms", ManagementFactory.getRuntimeMXBean().getUptime());
    }

    /** Runs on SIGTERM (and any other JVM exit): drains, logs, and exits with exitStatus. */
    private static void shutdown(Server server, JsonLog log) {
        if (exitStatus == 0) {
            log.info("pod stopping", "event", "stopping");
            long begin = System.nanoTime();
            int abandoned = server.stop();
            log.info("pod stopped", "event", "stop", "drain_ms", (System.nanoTime() - begin) / 1_000_000L,
                    "abandoned_requests", abandoned);
        }
        System.out.flush();
        // The JVM's own exit status after a signal is 128 + signal; a requested stop is a success.
        Runtime.getRuntime().halt(exitStatus);
    }

    private static void fail(JsonLog log, int code, String message) {
        exitStatus = code;
        log.error(message.lines().findFirst().orElse(message), "event", "error", "exit_code", code);
        System.err.println("aimp-java-pod: " + message);
        System.exit(code);
    }
}
