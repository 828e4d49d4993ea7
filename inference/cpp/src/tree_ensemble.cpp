// kind "tree_ensemble": scikit-learn's DecisionTreeClassifier / RandomForestClassifier
// predict_proba: the mean of the trees' leaf class distributions.
#include <cstdint>
#include <utility>

#include "model_kinds.hpp"

namespace aimp::model::detail {
namespace {

struct Node {
  std::int32_t left;  // -1 for a leaf
  std::int32_t right;
  std::int32_t feature;  // inner nodes only
  double threshold;      // float64, compared with the float32-cast input as scikit-learn does
};

struct Tree {
  std::vector<Node> nodes;
  std::vector<double> value;  // n_nodes x n_classes leaf distributions
};

class TreeEnsemble final : public Classifier {
 public:
  TreeEnsemble(std::size_t n_features, std::size_t n_classes, std::vector<Tree> trees)
      : n_features_(n_features), n_classes_(n_classes), trees_(std::move(trees)) {}

  std::size_t n_features() const override { return n_features_; }
  std::size_t n_classes() const override { return n_classes_; }

  void predict_proba(const double* rows, std::size_t n_rows, double* out) const override {
    const double n_trees = static_cast<double>(trees_.size());
    for (std::size_t r = 0; r < n_rows; ++r) {
      const double* x = rows + r * n_features_;
      double* proba = out + r * n_classes_;
      for (std::size_t c = 0; c < n_classes_; ++c) proba[c] = 0.0;
      // Summed tree by tree, then divided once, as RandomForestClassifier.predict_proba.
      for (const Tree& tree : trees_) {
        const double* leaf = tree.value.data() + leaf_of(tree, x) * n_classes_;
        for (std::size_t c = 0; c < n_classes_; ++c) proba[c] += leaf[c];
      }
      for (std::size_t c = 0; c < n_classes_; ++c) proba[c] /= n_trees;
    }
  }

 private:
  static std::size_t leaf_of(const Tree& tree, const double* x) {
    std::size_t i = 0;
    while (tree.nodes[i].left != -1) {
      const Node& node = tree.nodes[i];
      // scikit-learn evaluates trees on float32 inputs against float64 thresholds.
      const double feature = static_cast<float>(x[node.feature]);
      i = static_cast<std::size_t>(feature <= node.threshold ? node.left : node.right);
    }
    return i;
  }

  std::size_t n_features_;
  std::size_t n_classes_;
  std::vector<Tree> trees_;
};

// One tree, checked so that evaluation always ends at a leaf inside the arrays:
// a child always comes after its parent (true of every scikit-learn tree builder).
Tree read_tree(const Json& doc, std::size_t index, const CommonFields& common) {
  const std::string where = "tree " + std::to_string(index);
  if (!doc.is_object()) throw ModelError(where + " must be a JSON object");
  const Json& left_json = list(field(doc, "left"), where + " field 'left'");
  const std::size_t n = left_json.size();
  if (n == 0) throw ModelError(where + " has no nodes");
  if (n > static_cast<std::size_t>(INT32_MAX)) {  // node indices are kept as int32
    throw ModelError(where + " has " + std::to_string(n) + " nodes, more than 2^31 - 1");
  }
  const auto left = integer_list(left_json, where + " field 'left'", n);
  const auto right = integer_list(field(doc, "right"), where + " field 'right'", n);
  const auto feature = integer_list(field(doc, "feature"), where + " field 'feature'", n);
  const auto threshold = number_list(field(doc, "threshold"), where + " field 'threshold'", n);
  const Json& values = list(field(doc, "value"), where + " field 'value'");
  if (values.size() != n) {
    throw ModelError(where + " field 'value' has " + std::to_string(values.size()) + " rows for " +
                     std::to_string(n) + " nodes");
  }
  Tree tree;
  tree.nodes.reserve(n);
  tree.value.reserve(n * common.n_classes);
  const auto count = static_cast<long long>(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string node = where + " node " + std::to_string(i);
    const auto self = static_cast<long long>(i);
    const bool leaf = left[i] == -1;
    if (!leaf) {
      if (left[i] <= self || left[i] >= count || right[i] <= self || right[i] >= count) {
        throw ModelError(node + " has children " + std::to_string(left[i]) + " and " +
                         std::to_string(right[i]) + "; children must lie after it, below " +
                         std::to_string(n));
      }
      if (feature[i] < 0 || feature[i] >= static_cast<long long>(common.n_features)) {
        throw ModelError(node + " splits on feature " + std::to_string(feature[i]) +
                         " but the model has " + std::to_string(common.n_features));
      }
    }
    tree.nodes.push_back(Node{static_cast<std::int32_t>(left[i]),
                              static_cast<std::int32_t>(leaf ? -1 : right[i]),
                              static_cast<std::int32_t>(leaf ? 0 : feature[i]), threshold[i]});
    const auto row = number_list(values[i], node + " value", common.n_classes);
    tree.value.insert(tree.value.end(), row.begin(), row.end());
  }
  return tree;
}

}  // namespace

std::unique_ptr<const Classifier> make_tree_ensemble(const Json& doc, const CommonFields& common) {
  const Json& trees_json = list(field(doc, "trees"), "field 'trees'");
  if (trees_json.empty()) throw ModelError("field 'trees' is empty");
  std::vector<Tree> trees;
  trees.reserve(trees_json.size());
  for (std::size_t t = 0; t < trees_json.size(); ++t) {
    trees.push_back(read_tree(trees_json[t], t, common));
  }
  return std::make_unique<TreeEnsemble>(common.n_features, common.n_classes, std::move(trees));
}

}  // namespace aimp::model::detail
