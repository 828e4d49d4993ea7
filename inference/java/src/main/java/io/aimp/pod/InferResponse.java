package io.aimp.pod;

import com.fasterxml.jackson.core.JsonGenerator;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Map;

/** Encodes inference results as the protocol's JSON, with binary tensor data where asked. */
final class InferResponse {

    private InferResponse() {}

    /**
     * The response for {@code request}: probabilities ({@code rows x classes}, FP64) and labels
     * ({@code rows x 1}, INT64), each as JSON data or as little-endian bytes after the JSON header.
     */
    static Response encode(String modelName, InferRequest request, double[] probabilities, long[] labels,
            int classes) {
        int rows = request.rows();
        ByteArrayOutputStream json = new ByteArrayOutputStream(64 + rows * classes * 24);
        ByteArrayOutputStream binary = new ByteArrayOutputStream();
        try (JsonGenerator out = Json.MAPPER.getFactory().createGenerator(json)) {
            out.writeStartObject();
            out.writeStringField("model_name", modelName);
            out.writeStringField("model_version", Protocol.MODEL_VERSION);
            if (request.id() != null) {
                out.writeStringField("id", request.id());
            }
            out.writeArrayFieldStart("outputs");
            for (InferRequest.Output output : request.outputs()) {
                boolean probs = output.name().equals(LoadedModel.PROBABILITIES);
                out.writeStartObject();
                out.writeStringField("name", output.name());
                out.writeStringField("datatype", probs ? "FP64" : "INT64");
                out.writeArrayFieldStart("shape");
                out.writeNumber(rows);
                out.writeNumber(probs ? classes : 1);
                out.writeEndArray();
                if (output.binary()) {
                    byte[] bytes = probs ? littleEndian(probabilities) : littleEndian(labels);
                    binary.writeBytes(bytes);
                    out.writeObjectFieldStart("parameters");
                    out.writeNumberField("binary_data_size", bytes.length);
                    out.writeEndObject();
                } else if (probs) {
                    out.writeFieldName("data");
                    out.writeArray(probabilities, 0, probabilities.length);
                } else {
                    out.writeFieldName("data");
                    out.writeArray(labels, 0, labels.length);
                }
                out.writeEndObject();
            }
            out.writeEndArray();
            out.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        if (binary.size() == 0) {
            return Response.json(200, json.toByteArray());
        }
        int headerLength = json.size();
        json.writeBytes(binary.toByteArray());
        return new Response(200, "application/octet-stream",
                Map.of("Inference-Header-Content-Length", Integer.toString(headerLength)), json.toByteArray());
    }

    private static byte[] littleEndian(double[] values) {
        ByteBuffer buffer = ByteBuffer.allocate(values.length * Double.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        buffer.asDoubleBuffer().put(values);
        return buffer.array();
    }

    private static byte[] littleEndian(long[] values) {
        ByteBuffer buffer = ByteBuffer.allocate(values.length * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        buffer.asLongBuffer().put(values);
        return buffer.array();
    }
}
