package io.aimp.pod;

/** A classifier evaluated in double precision: rows of features in, class probabilities out. */
public interface Model {

    /** The model's kind as written in the model file, e.g. {@code "tree_ensemble"}. */
    String kind();

    /** How many features one row has. */
    int featureCount();

    /** How many classes (probability columns) the model has. */
    int classCount();

    /**
     * Writes the class probabilities of {@code rows} rows into {@code out}.
     *
     * @param features row-major features, {@code rows * featureCount()} values
     * @param rows how many rows {@code features} holds
     * @param out row-major probabilities, {@code rows * classCount()} values
     */
    void predictProba(double[] features, int rows, double[] out);

    /** The index of each row's most probable class, ties to the lowest index (numpy's argmax). */
    static long[] argmaxPerRow(double[] probabilities, int rows, int classes) {
        long[] labels = new long[rows];
        for (int r = 0; r < rows; r++) {
            int base = r * classes;
            int best = 0;
            for (int c = 1; c < classes; c++) {
                if (probabilities[base + c] > probabilities[base + best]) {
                    best = c;
                }
            }
            labels[r] = best;
        }
        return labels;
    }
}
