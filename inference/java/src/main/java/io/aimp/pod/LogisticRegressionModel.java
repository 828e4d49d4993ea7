package io.aimp.pod;

/**
 * scikit-learn's LogisticRegression: a sigmoid for one coefficient row (two classes),
 * otherwise a softmax over the rows' scores computed with the maximum subtracted first.
 */
public final class LogisticRegressionModel implements Model {

    private final double[][] coef;
    private final double[] intercept;
    private final int features;
    private final int classes;

    /**
     * @param coef {@code [k][features]} with {@code k == 1} for two classes, else {@code k == classes}
     * @param intercept {@code [k]}
     * @param classes how many classes the model predicts
     */
    public LogisticRegressionModel(double[][] coef, double[] intercept, int classes) {
        if (coef.length == 0 || coef.length != intercept.length) {
            throw new IllegalArgumentException("coef and intercept need the same, non-zero number of rows");
        }
        if (coef.length == 1 ? classes != 2 : coef.length != classes) {
            throw new IllegalArgumentException(
                    coef.length + " coefficient rows do not fit " + classes + " classes");
        }
        this.features = coef[0].length;
        for (double[] row : coef) {
            if (row.length != features) {
                throw new IllegalArgumentException("coefficient rows differ in length");
            }
        }
        this.coef = deepCopy(coef);
        this.intercept = intercept.clone();
        this.classes = classes;
    }

    @Override
    public String kind() {
        return "logistic_regression";
    }

    @Override
    public int featureCount() {
        return features;
    }

    @Override
    public int classCount() {
        return classes;
    }

    @Override
    public void predictProba(double[] x, int rows, double[] out) {
        double[] scores = new double[coef.length];
        for (int r = 0; r < rows; r++) {
            int in = r * features;
            for (int k = 0; k < coef.length; k++) {
                double z = intercept[k];
                double[] w = coef[k];
                double dot = 0.0;
                for (int f = 0; f < features; f++) {
                    dot += x[in + f] * w[f];
                }
                scores[k] = dot + z;
            }
            int o = r * classes;
            if (coef.length == 1) {
                double p1 = 1.0 / (1.0 + Math.exp(-scores[0]));
                out[o] = 1.0 - p1;
                out[o + 1] = p1;
            } else {
                softmax(scores, out, o);
            }
        }
    }

    private static void softmax(double[] scores, double[] out, int offset) {
        double max = Double.NEGATIVE_INFINITY;
        for (double s : scores) {
            max = Math.max(max, s);
        }
        double sum = 0.0;
        for (int k = 0; k < scores.length; k++) {
            double e = Math.exp(scores[k] - max);
            out[offset + k] = e;
            sum += e;
        }
        for (int k = 0; k < scores.length; k++) {
            out[offset + k] /= sum;
        }
    }

    private static double[][] deepCopy(double[][] rows) {
        double[][] copy = new double[rows.length][];
        for (int i = 0; i < rows.length; i++) {
            copy[i] = rows[i].clone();
        }
        return copy;
    }
}
