package io.aimp.pod;

import java.util.List;

/**
 * A forest (or one tree) of scikit-learn decision trees: each row walks every tree, going left
 * where {@code float32(x[feature]) <= threshold}, and the probabilities are the mean of the leaves'
 * class distributions, summed in tree order as scikit-learn does.
 */
public final class TreeEnsembleModel implements Model {

    /**
     * One tree in scikit-learn's array form; node {@code i} is a leaf when {@code left[i] == -1}.
     * Children always have larger indices than their parent (checked by the loader), so every walk
     * ends.
     *
     * @param left left child per node, -1 at leaves
     * @param right right child per node, -1 at leaves
     * @param feature the feature an inner node tests
     * @param threshold the inner node's threshold (float64, compared with the float32 input)
     * @param value row-major {@code [nodes][classes]} leaf class distributions
     */
    public record Tree(int[] left, int[] right, int[] feature, double[] threshold, double[] value) {}

    private final List<Tree> trees;
    private final int features;
    private final int classes;

    public TreeEnsembleModel(List<Tree> trees, int features, int classes) {
        if (trees.isEmpty()) {
            throw new IllegalArgumentException("a tree ensemble needs at least one tree");
        }
        this.trees = List.copyOf(trees);
        this.features = features;
        this.classes = classes;
    }

    @Override
    public String kind() {
        return "tree_ensemble";
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
        double count = trees.size();
        for (int r = 0; r < rows; r++) {
            int in = r * features;
            int o = r * classes;
            for (int c = 0; c < classes; c++) {
                out[o + c] = 0.0;
            }
            for (Tree tree : trees) {
                int leaf = leafOf(tree, x, in);
                int v = leaf * classes;
                for (int c = 0; c < classes; c++) {
                    out[o + c] += tree.value[v + c];
                }
            }
            for (int c = 0; c < classes; c++) {
                out[o + c] /= count;
            }
        }
    }

    private static int leafOf(Tree tree, double[] x, int offset) {
        int[] left = tree.left;
        int node = 0;
        while (left[node] != -1) {
            double value = (float) x[offset + tree.feature[node]];
            node = value <= tree.threshold[node] ? left[node] : tree.right[node];
        }
        return node;
    }
}
