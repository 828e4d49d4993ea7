package io.aimp.pod;

import java.util.List;

/**
 * A model read from its file, with the tensor names the protocol shows for it.
 *
 * @param inputName the name of the model's one input tensor
 * @param classes the class labels, in probability-column order, as text
 * @param model the evaluator
 */
public record LoadedModel(String inputName, List<String> classes, Model model) {

    /** The name of the probabilities output (FP64, {@code [n, classes]}). */
    public static final String PROBABILITIES = "probabilities";

    /** The name of the label output (INT64, {@code [n, 1]}: the most probable class's index). */
    public static final String LABEL = "label";

    public LoadedModel {
        classes = List.copyOf(classes);
    }
}
