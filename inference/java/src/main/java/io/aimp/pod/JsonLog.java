package io.aimp.pod;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.PrintStream;
import java.time.Instant;

/**
 * One JSON object per line on stdout, shaped like the Python services' logs: {@code ts},
 * {@code level}, {@code logger}, {@code service}, {@code message}, then the event's own fields.
 */
public final class JsonLog {

    private static final String LOGGER = "aimp.java_pod";

    private final PrintStream out;
    private final String service;

    public JsonLog(PrintStream out, String service) {
        this.out = out;
        this.service = service;
    }

    /** Logs at INFO; {@code fields} alternates names and values. */
    public void info(String message, Object... fields) {
        write("INFO", message, fields);
    }

    /** Logs at WARNING; {@code fields} alternates names and values. */
    public void warning(String message, Object... fields) {
        write("WARNING", message, fields);
    }

    /** Logs at ERROR; {@code fields} alternates names and values. */
    public void error(String message, Object... fields) {
        write("ERROR", message, fields);
    }

    private void write(String level, String message, Object... fields) {
        ObjectNode line = Json.MAPPER.createObjectNode();
        line.put("ts", Instant.now().toString());
        line.put("level", level);
        line.put("logger", LOGGER);
        line.put("service", service);
        line.put("message", message);
        for (int i = 0; i + 1 < fields.length; i += 2) {
            line.set(String.valueOf(fields[i]), Json.MAPPER.valueToTree(fields[i + 1]));
        }
        String text;
        try {
            text = Json.MAPPER.writeValueAsString(line);
        } catch (IOException e) {
            text = "{\"level\":\"ERROR\",\"message\":" + Json.quote("unloggable event: " + message) + "}";
        }
        synchronized (out) {
            out.println(text);
            out.flush();
        }
    }
}
