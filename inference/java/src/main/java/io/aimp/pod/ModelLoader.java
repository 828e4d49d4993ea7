package io.aimp.pod;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads the portable scikit-learn JSON ({@code aimp-sklearn-json/1}, written by
 * {@code aimp_inference.export}) and checks it completely before anything is served, so that a
 * broken file stops the pod at start with a message naming the field at fault.
 */
public final class ModelLoader {

    /** The one format version this pod understands. */
    public static final String FORMAT = "aimp-sklearn-json/1";

    private final ObjectMapper mapper;

    public ModelLoader(ObjectMapper mapper) {
        this.mapper = mapper;
    }

    /** Loads and validates {@code file}; every failure names the file. */
    public LoadedModel load(Path file) throws ModelFileException {
        JsonNode doc;
        try {
            doc = mapper.readTree(Files.readAllBytes(file));
        } catch (JsonProcessingException e) {
            throw new ModelFileException(
                    "model file " + file + " is not valid JSON: " + e.getOriginalMessage(), e);
        } catch (IOException e) {
            throw new ModelFileException("cannot read model file " + file + ": " + e, e);
        }
        try {
            return parse(doc);
        } catch (IllegalArgumentException e) {
            throw new ModelFileException("model file " + file + " is not a usable "
                    + FORMAT + " document: " + e.getMessage(), e);
        }
    }

    /** Validates a parsed document; throws IllegalArgumentException naming the bad field. */
    static LoadedModel parse(JsonNode doc) {
        if (doc == null || !doc.isObject()) {
            throw new IllegalArgumentException("the top level must be a JSON object");
        }
        String format = text(doc, "format");
        if (!FORMAT.equals(format)) {
            throw new IllegalArgumentException(
                    "format is '" + format + "', expected '" + FORMAT + "'");
        }
        int features = positiveInt(doc, "n_features");
        List<String> classes = classes(doc);
        String inputName = doc.has("input_name") ? text(doc, "input_name") : "input";
        String kind = text(doc, "kind");
        Model model = switch (kind) {
            case "logistic_regression" -> logisticRegression(doc, features, classes.size());
            case "tree_ensemble" -> treeEnsemble(doc, features, classes.size());
            default -> throw new IllegalArgumentException("kind '" + kind
                    + "' is not supported; supported: logistic_regression, tree_ensemble");
        };
        return new LoadedModel(inputName, classes, model);
    }

    private static List<String> classes(JsonNode doc) {
        JsonNode node = field(doc, "classes");
        if (!node.isArray() || node.size() < 2) {
            throw new IllegalArgumentException("classes must be a list of at least two labels");
        }
        List<String> labels = new ArrayList<>();
        for (int i = 0; i < node.size(); i++) {
            JsonNode label = node.get(i);
            if (!label.isNumber() && !label.isTextual() && !label.isBoolean()) {
                throw new IllegalArgumentException("classes[" + i + "] must be a number or text");
            }
            labels.add(label.asText());
        }
        return labels;
    }

    private static Model logisticRegression(JsonNode doc, int features, int classes) {
        JsonNode coefNode = field(doc, "coef");
        if (!coefNode.isArray() || coefNode.isEmpty()) {
            throw new IllegalArgumentException("coef must be a non-empty list of rows");
        }
        int k = coefNode.size();
        if (k == 1 ? classes != 2 : k != classes) {
            throw new IllegalArgumentException("coef has " + k + " rows but there are " + classes
                    + " classes (expected 1 row for 2 classes, else one row per class)");
        }
        double[][] coef = new double[k][];
        for (int j = 0; j < k; j++) {
            coef[j] = doubles(coefNode.get(j), "coef[" + j + "]", features);
        }
        double[] intercept = doubles(field(doc, "intercept"), "intercept", k);
        return new LogisticRegressionModel(coef, intercept, classes);
    }

    private static Model treeEnsemble(JsonNode doc, int features, int classes) {
        JsonNode treesNode = field(doc, "trees");
        if (!treesNode.isArray() || treesNode.isEmpty()) {
            throw new IllegalArgumentException("trees must be a non-empty list");
        }
        List<TreeEnsembleModel.Tree> trees = new ArrayList<>(treesNode.size());
        for (int t = 0; t < treesNode.size(); t++) {
            trees.add(tree(treesNode.get(t), "trees[" + t + "]", features, classes));
        }
        return new TreeEnsembleModel(trees, features, classes);
    }

    private static TreeEnsembleModel.Tree tree(JsonNode node, String where, int features, int classes) {
        if (!node.isObject()) {
            throw new IllegalArgumentException(where + " must be an object");
        }
        JsonNode leftNode = field(node, "left", where);
        if (!leftNode.isArray() || leftNode.isEmpty()) {
            throw new IllegalArgumentException(where + ".left must be a non-empty list");
        }
        int nodes = leftNode.size();
        int[] left = ints(leftNode, where + ".left", nodes);
        int[] right = ints(field(node, "right", where), where + ".right", nodes);
        int[] feature = ints(field(node, "feature", where), where + ".feature", nodes);
        double[] threshold = doubles(field(node, "threshold", where), where + ".threshold", nodes);
        JsonNode valueNode = field(node, "value", where);
        if (!valueNode.isArray() || valueNode.size() != nodes) {
            throw new IllegalArgumentException(where + ".value must have one row per node (" + nodes + ")");
        }
        double[] value = new double[nodes * classes];
        for (int i = 0; i < nodes; i++) {
            double[] row = doubles(valueNode.get(i), where + ".value[" + i + "]", classes);
            System.arraycopy(row, 0, value, i * classes, classes);
            boolean leaf = left[i] == -1;
            if (leaf != (right[i] == -1)) {
                throw new IllegalArgumentException(where + ": node " + i
                        + " has one child only (left and right must both be -1 at a leaf)");
            }
            if (!leaf) {
                // Children come after their parent in scikit-learn's arrays; requiring it
                // guarantees that every walk from the root ends at a leaf.
                if (left[i] <= i || left[i] >= nodes || right[i] <= i || right[i] >= nodes) {
                    throw new IllegalArgumentException(where + ": node " + i + " has children "
                            + left[i] + " and " + right[i] + "; children must lie in (" + i + ", "
                            + nodes + ")");
                }
                if (feature[i] < 0 || feature[i] >= features) {
                    throw new IllegalArgumentException(where + ": node " + i + " tests feature "
                            + feature[i] + " but the model has " + features + " features");
                }
            }
        }
        return new TreeEnsembleModel.Tree(left, right, feature, threshold, value);
    }

    private static JsonNode field(JsonNode node, String name) {
        return field(node, name, null);
    }

    private static JsonNode field(JsonNode node, String name, String where) {
        JsonNode value = node.get(name);
        if (value == null || value.isNull()) {
            throw new IllegalArgumentException(
                    "missing field '" + (where == null ? name : where + "." + name) + "'");
        }
        return value;
    }

    private static String text(JsonNode doc, String name) {
        JsonNode value = field(doc, name);
        if (!value.isTextual()) {
            throw new IllegalArgumentException("'" + name + "' must be text");
        }
        return value.asText();
    }

    private static int positiveInt(JsonNode doc, String name) {
        JsonNode value = field(doc, name);
        if (!value.canConvertToInt() || !value.isIntegralNumber() || value.intValue() < 1) {
            throw new IllegalArgumentException("'" + name + "' must be a positive integer");
        }
        return value.intValue();
    }

    private static double[] doubles(JsonNode node, String where, int expected) {
        if (!node.isArray() || node.size() != expected) {
            throw new IllegalArgumentException(where + " must be a list of " + expected + " numbers");
        }
        double[] out = new double[expected];
        for (int i = 0; i < expected; i++) {
            JsonNode v = node.get(i);
            if (!v.isNumber()) {
                throw new IllegalArgumentException(where + "[" + i + "] is not a number");
            }
            out[i] = v.doubleValue();
        }
        return out;
    }

    private static int[] ints(JsonNode node, String where, int expected) {
        if (!node.isArray() || node.size() != expected) {
            throw new IllegalArgumentException(where + " must be a list of " + expected + " integers");
        }
        int[] out = new int[expected];
        for (int i = 0; i < expected; i++) {
            JsonNode v = node.get(i);
            if (!v.isIntegralNumber() || !v.canConvertToInt()) {
                throw new IllegalArgumentException(where + "[" + i + "] is not an integer");
            }
            out[i] = v.intValue();
        }
        return out;
    }
}
