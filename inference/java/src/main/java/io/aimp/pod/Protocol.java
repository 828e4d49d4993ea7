package io.aimp.pod;

import static java.nio.charset.StandardCharsets.UTF_8;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.UncheckedIOException;
import java.util.Arrays;
import java.util.List;
import java.util.function.BooleanSupplier;

/**
 * The Open Inference Protocol (KServe v2) over one model, independent of any HTTP server: a
 * {@link Request} in, a {@link Response} out. Errors are the protocol's {@code {"error": ...}}.
 */
public final class Protocol {

    /** The one version each model has. */
    public static final String MODEL_VERSION = "1";

    /** The platform string in model metadata. */
    public static final String PLATFORM = "aimp_sklearn_json";

    static final String SERVER_NAME = "aimp-java-pod";
    static final String SERVER_VERSION = "0.1.0";

    private final String modelName;
    private final LoadedModel model;
    private final BooleanSupplier ready;
    private final byte[] serverMetadata;
    private final byte[] modelMetadata;
    private final byte[] modelReady;

    /**
     * @param modelName the name the model is served under
     * @param model the loaded model
     * @param ready whether the server takes requests (false while draining)
     */
    public Protocol(String modelName, LoadedModel model, BooleanSupplier ready) {
        this.modelName = modelName;
        this.model = model;
        this.ready = ready;
        this.serverMetadata = serverMetadata();
        this.modelMetadata = modelMetadata();
        this.modelReady = bytes(Json.MAPPER.createObjectNode().put("name", modelName).put("ready", true));
    }

    /** Answers one request; never throws for a bad request. */
    public Response handle(Request request) {
        try {
            return route(request);
        } catch (ProtocolException e) {
            return e.response();
        }
    }

    private Response route(Request request) {
        List<String> parts = segments(request.path());
        String method = request.method();
        if (parts.isEmpty() || !parts.get(0).equals("v2")) {
            throw ProtocolException.notFound(noRoute(request));
        }
        if (parts.size() == 1) {
            return get(method, request, serverMetadata);
        }
        if (parts.size() == 3 && parts.get(1).equals("health")) {
            if (parts.get(2).equals("live")) {
                return get(method, request, "{\"live\":true}".getBytes(UTF_8));
            }
            if (parts.get(2).equals("ready")) {
                requireMethod(method, "GET", request);
                return ready.getAsBoolean()
                        ? Response.json(200, "{\"ready\":true}".getBytes(UTF_8))
                        : Response.error(503, "server is shutting down");
            }
        }
        if (parts.size() >= 3 && parts.get(1).equals("models")) {
            return model(parts, method, request);
        }
        throw ProtocolException.notFound(noRoute(request));
    }

    private Response model(List<String> parts, String method, Request request) {
        String name = parts.get(2);
        List<String> rest = parts.subList(3, parts.size());
        if (rest.size() >= 2 && rest.get(0).equals("versions")) {
            String version = rest.get(1);
            checkModel(name);
            if (!version.equals(MODEL_VERSION)) {
                throw ProtocolException.notFound("model '" + name + "' has no version '" + version
                        + "'; its only version is '" + MODEL_VERSION + "'");
            }
            rest = rest.subList(2, rest.size());
        }
        if (rest.isEmpty()) {
            checkModel(name);
            return get(method, request, modelMetadata);
        }
        if (rest.size() == 1 && rest.get(0).equals("ready")) {
            checkModel(name);
            return get(method, request, modelReady);
        }
        if (rest.size() == 1 && rest.get(0).equals("infer")) {
            requireMethod(method, "POST", request);
            checkModel(name);
            return infer(request);
        }
        throw ProtocolException.notFound(noRoute(request));
    }

    private Response infer(Request request) {
        String header = request.header("Inference-Header-Content-Length");
        Integer headerLength = null;
        if (header != null) {
            try {
                headerLength = Integer.valueOf(header.trim());
            } catch (NumberFormatException e) {
                throw ProtocolException.badRequest("Inference-Header-Content-Length '" + header
                        + "' is not a number");
            }
        }
        InferRequest decoded = InferRequest.decode(request.body(), headerLength, modelName, model);
        Model evaluator = model.model();
        int classes = evaluator.classCount();
        double[] probabilities = new double[decoded.rows() * classes];
        evaluator.predictProba(decoded.features(), decoded.rows(), probabilities);
        long[] labels = Model.argmaxPerRow(probabilities, decoded.rows(), classes);
        return InferResponse.encode(modelName, decoded, probabilities, labels, classes);
    }

    private void checkModel(String name) {
        if (!name.equals(modelName)) {
            throw ProtocolException.notFound("unknown model '" + name + "'; this server serves model '"
                    + modelName + "'");
        }
    }

    private static Response get(String method, Request request, byte[] body) {
        requireMethod(method, "GET", request);
        return Response.json(200, body);
    }

    private static void requireMethod(String method, String allowed, Request request) {
        // HEAD is GET without the body (the server leaves the body out).
        boolean headOfGet = method.equals("HEAD") && allowed.equals("GET");
        if (!method.equals(allowed) && !headOfGet) {
            throw ProtocolException.methodNotAllowed(
                    method + " is not allowed on " + request.path() + "; use " + allowed, allowed);
        }
    }

    private static String noRoute(Request request) {
        return "no route for " + request.method() + " " + request.path()
                + "; this server speaks the Open Inference Protocol under /v2";
    }

    private static List<String> segments(String path) {
        return Arrays.stream(path.split("/")).filter(s -> !s.isEmpty()).toList();
    }

    private byte[] serverMetadata() {
        ObjectNode doc = Json.MAPPER.createObjectNode();
        doc.put("name", SERVER_NAME).put("version", SERVER_VERSION);
        doc.putArray("extensions").add("binary_tensor_data");
        return bytes(doc);
    }

    private byte[] modelMetadata() {
        Model evaluator = model.model();
        ObjectNode doc = Json.MAPPER.createObjectNode();
        doc.put("name", modelName);
        doc.putArray("versions").add(MODEL_VERSION);
        doc.put("platform", PLATFORM);
        tensor(doc.putArray("inputs"), model.inputName(), "FP64", evaluator.featureCount());
        ArrayNode outputs = doc.putArray("outputs");
        tensor(outputs, LoadedModel.PROBABILITIES, "FP64", evaluator.classCount());
        tensor(outputs, LoadedModel.LABEL, "INT64", 1);
        return bytes(doc);
    }

    private static void tensor(ArrayNode into, String name, String datatype, int width) {
        ObjectNode tensor = into.addObject().put("name", name).put("datatype", datatype);
        tensor.putArray("shape").add(-1).add(width);
    }

    private static byte[] bytes(ObjectNode doc) {
        try {
            return Json.MAPPER.writeValueAsBytes(doc);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }
}
