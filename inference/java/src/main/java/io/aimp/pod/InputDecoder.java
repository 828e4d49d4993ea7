package io.aimp.pod;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/** Reads the request's {@code "inputs"} into the model's row-major double matrix. */
final class InputDecoder {

    private final String modelName;
    private final LoadedModel model;
    private final ByteBuffer binary;
    private int binaryCursor;
    private int rows = -1;

    InputDecoder(String modelName, LoadedModel model, ByteBuffer binary) {
        this.modelName = modelName;
        this.model = model;
        this.binary = binary;
    }

    int rows() {
        return rows;
    }

    double[] decodeInputs(JsonNode inputs) {
        String expected = model.inputName();
        if (inputs == null || !inputs.isArray() || inputs.isEmpty()) {
            throw ProtocolException.badRequest("the request needs an 'inputs' list holding input '"
                    + expected + "'");
        }
        double[] features = null;
        List<String> names = new ArrayList<>();
        for (int i = 0; i < inputs.size(); i++) {
            JsonNode input = inputs.get(i);
            JsonNode nameNode = input.get("name");
            if (nameNode == null || !nameNode.isTextual()) {
                throw ProtocolException.badRequest("inputs[" + i + "] needs a 'name' string");
            }
            String name = nameNode.asText();
            names.add(name);
            if (!name.equals(expected)) {
                throw ProtocolException.badRequest("unexpected input '" + name + "'; model '"
                        + modelName + "' takes one input named '" + expected + "'");
            }
            if (features != null) {
                throw ProtocolException.badRequest("input '" + name + "' is given twice");
            }
            features = decodeInput(input, name);
        }
        if (binaryCursor != binary.limit()) {
            throw ProtocolException.badRequest("the body carries " + binary.limit()
                    + " bytes of binary tensor data but the inputs' binary_data_size add up to "
                    + binaryCursor);
        }
        if (features == null) {
            throw ProtocolException.badRequest("missing input '" + expected + "'; the request has " + names);
        }
        return features;
    }

    private double[] decodeInput(JsonNode input, String name) {
        int featureCount = model.model().featureCount();
        JsonNode typeNode = input.get("datatype");
        if (typeNode == null || !typeNode.isTextual()) {
            throw ProtocolException.badRequest("input '" + name + "' needs a 'datatype' such as \"FP64\"");
        }
        DataType type = DataType.byName(typeNode.asText());
        if (type == null) {
            throw ProtocolException.badRequest("input '" + name + "' has datatype '" + typeNode.asText()
                    + "'; supported: " + DataType.names());
        }
        long[] shape = shape(input, name);
        String needed = "[-1," + featureCount + "]";
        if (shape.length != 2 || shape[1] != featureCount) {
            throw ProtocolException.badRequest("input '" + name + "' has shape " + format(shape)
                    + " but the model needs " + needed);
        }
        if (shape[0] > InferRequest.MAX_VALUES / featureCount) {
            throw ProtocolException.badRequest("input '" + name + "' has " + shape[0]
                    + " rows; split the request into batches of at most "
                    + InferRequest.MAX_VALUES / featureCount + " rows");
        }
        rows = (int) shape[0];
        int count = rows * featureCount;
        JsonNode params = input.get("parameters");
        JsonNode binarySize = params == null ? null : params.get("binary_data_size");
        if (binarySize != null) {
            return fromBinary(name, type, shape, count, binarySize);
        }
        JsonNode data = input.get("data");
        if (data == null) {
            throw ProtocolException.badRequest("input '" + name + "' has no 'data'");
        }
        double[] values = new double[count];
        int[] filled = {0};
        flatten(data, 0, values, filled, type, name, shape);
        if (filled[0] != count) {
            throw ProtocolException.badRequest("input '" + name + "' has " + filled[0]
                    + " values but its shape " + format(shape) + " needs " + count);
        }
        return values;
    }

    private double[] fromBinary(String name, DataType type, long[] shape, int count, JsonNode size) {
        long needed = (long) count * type.bytes();
        if (!size.canConvertToLong() || size.longValue() != needed) {
            throw ProtocolException.badRequest("input '" + name + "' has binary_data_size " + size
                    + " but " + type + " with shape " + format(shape) + " needs " + needed + " bytes");
        }
        if (binaryCursor + needed > binary.limit()) {
            throw ProtocolException.badRequest("input '" + name + "' needs " + needed
                    + " bytes of binary data but only " + (binary.limit() - binaryCursor) + " remain");
        }
        ByteBuffer own = binary.slice(binaryCursor, (int) needed).order(binary.order());
        binaryCursor += (int) needed;
        double[] values = new double[count];
        for (int i = 0; i < count; i++) {
            values[i] = type.fromBytes(own, i);
        }
        return values;
    }

    private static void flatten(JsonNode node, int depth, double[] into, int[] filled, DataType type,
            String name, long[] shape) {
        if (node.isArray()) {
            if (depth == shape.length) {
                throw ProtocolException.badRequest("input '" + name + "' has 'data' nested deeper than"
                        + " its shape " + format(shape) + "; send a flat list or one list per row");
            }
            for (JsonNode child : node) {
                flatten(child, depth + 1, into, filled, type, name, shape);
            }
            return;
        }
        int at = filled[0]++;
        if (at >= into.length) {
            return; // counted on, reported by the caller as too many values
        }
        try {
            into[at] = type.fromJson(node);
        } catch (IllegalArgumentException e) {
            throw ProtocolException.badRequest("input '" + name + "' element " + at + " " + e.getMessage());
        }
    }

    private static long[] shape(JsonNode input, String name) {
        JsonNode node = input.get("shape");
        if (node == null || !node.isArray()) {
            throw ProtocolException.badRequest("input '" + name + "' needs a 'shape' list such as [1, 4]");
        }
        long[] shape = new long[node.size()];
        for (int i = 0; i < shape.length; i++) {
            JsonNode dim = node.get(i);
            if (!dim.isIntegralNumber() || !dim.canConvertToLong() || dim.longValue() < 0) {
                throw ProtocolException.badRequest("input '" + name + "' has shape " + node
                        + "; dimensions must be non-negative integers");
            }
            shape[i] = dim.longValue();
        }
        return shape;
    }

    private static String format(long[] shape) {
        StringBuilder text = new StringBuilder("[");
        for (int i = 0; i < shape.length; i++) {
            text.append(i == 0 ? "" : ",").append(shape[i]);
        }
        return text.append(']').toString();
    }
}
