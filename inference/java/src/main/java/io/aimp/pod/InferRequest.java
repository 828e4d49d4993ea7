package io.aimp.pod;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * A decoded inference request: the input rows as doubles and the outputs to return.
 *
 * @param id the request's {@code "id"}, echoed in the response, or null
 * @param features row-major input values, {@code rows * featureCount}
 * @param rows how many rows
 * @param outputs the outputs to return, in order
 */
public record InferRequest(String id, double[] features, int rows, List<Output> outputs) {

    /** The largest number of input values one request may carry. */
    static final long MAX_VALUES = Integer.MAX_VALUE / 16;

    /**
     * One output to return.
     *
     * @param name {@link LoadedModel#PROBABILITIES} or {@link LoadedModel#LABEL}
     * @param binary whether to return it in the binary tensor extension
     */
    public record Output(String name, boolean binary) {}

    public InferRequest {
        outputs = List.copyOf(outputs);
    }

    /**
     * Decodes a request body (JSON, or a JSON header of {@code headerLength} bytes followed by
     * binary tensor data); throws ProtocolException 400 saying exactly what is wrong.
     */
    public static InferRequest decode(byte[] body, Integer headerLength, String modelName, LoadedModel model) {
        int jsonLength = body.length;
        if (headerLength != null) {
            if (headerLength < 0 || headerLength > body.length) {
                throw ProtocolException.badRequest("Inference-Header-Content-Length is " + headerLength
                        + " but the body has " + body.length + " bytes");
            }
            jsonLength = headerLength;
        }
        JsonNode doc = parse(body, jsonLength);
        String id = null;
        JsonNode idNode = doc.get("id");
        if (idNode != null && !idNode.isNull()) {
            if (!idNode.isTextual()) {
                throw ProtocolException.badRequest("'id' must be a string, got " + idNode);
            }
            id = idNode.asText();
        }
        ByteBuffer binary = ByteBuffer.wrap(body, jsonLength, body.length - jsonLength).slice()
                .order(ByteOrder.LITTLE_ENDIAN);
        InputDecoder decoder = new InputDecoder(modelName, model, binary);
        double[] features = decoder.decodeInputs(doc.get("inputs"));
        return new InferRequest(id, features, decoder.rows(), outputs(doc, modelName));
    }

    private static JsonNode parse(byte[] body, int length) {
        if (length == 0) {
            throw ProtocolException.badRequest(
                    "the request body is empty; send a JSON object with an 'inputs' list");
        }
        JsonNode doc;
        try {
            doc = Json.MAPPER.readTree(body, 0, length);
        } catch (JsonProcessingException e) {
            JsonLocation at = e.getLocation();
            String where = at == null ? "" : " (line " + at.getLineNr() + ", column " + at.getColumnNr() + ")";
            throw ProtocolException.badRequest(
                    "the request body is not valid JSON: " + e.getOriginalMessage() + where);
        } catch (IOException e) {
            throw ProtocolException.badRequest("the request body cannot be read: " + e.getMessage());
        }
        if (doc == null || !doc.isObject()) {
            throw ProtocolException.badRequest("the request body must be a JSON object with an 'inputs' list");
        }
        return doc;
    }

    private static List<Output> outputs(JsonNode doc, String modelName) {
        boolean binaryDefault = false;
        JsonNode params = doc.get("parameters");
        if (params != null && params.isObject() && params.has("binary_data_output")) {
            binaryDefault = flag(params.get("binary_data_output"), "parameters.binary_data_output");
        }
        JsonNode requested = doc.get("outputs");
        List<Output> outputs = new ArrayList<>();
        if (requested == null || requested.isNull() || (requested.isArray() && requested.isEmpty())) {
            outputs.add(new Output(LoadedModel.PROBABILITIES, binaryDefault));
            outputs.add(new Output(LoadedModel.LABEL, binaryDefault));
            return outputs;
        }
        if (!requested.isArray()) {
            throw ProtocolException.badRequest("'outputs' must be a list of {\"name\": ...} objects");
        }
        for (int i = 0; i < requested.size(); i++) {
            JsonNode out = requested.get(i);
            JsonNode name = out.get("name");
            if (name == null || !name.isTextual()) {
                throw ProtocolException.badRequest("outputs[" + i + "] needs a 'name' string");
            }
            String n = name.asText();
            if (!n.equals(LoadedModel.PROBABILITIES) && !n.equals(LoadedModel.LABEL)) {
                throw ProtocolException.badRequest("unknown output '" + n + "'; model '" + modelName
                        + "' has outputs 'probabilities' and 'label'");
            }
            if (outputs.stream().anyMatch(o -> o.name().equals(n))) {
                throw ProtocolException.badRequest("output '" + n + "' is requested twice");
            }
            boolean binary = binaryDefault;
            JsonNode p = out.get("parameters");
            if (p != null && p.isObject()) {
                if (p.has("classification")) {
                    throw ProtocolException.badRequest(
                            "the classification extension is not supported; read the 'label' output");
                }
                if (p.has("binary_data")) {
                    binary = flag(p.get("binary_data"), "outputs[" + i + "].parameters.binary_data");
                }
            }
            outputs.add(new Output(n, binary));
        }
        return outputs;
    }

    private static boolean flag(JsonNode node, String where) {
        if (!node.isBoolean()) {
            throw ProtocolException.badRequest("'" + where + "' must be true or false, got " + node);
        }
        return node.booleanValue();
    }
}
