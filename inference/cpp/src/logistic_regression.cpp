// kind "logistic_regression": scikit-learn's LogisticRegression.predict_proba.
#include <algorithm>
#include <cmath>
#include <utility>

#include "model_kinds.hpp"

namespace aimp::model::detail {
namespace {

class LogisticRegression final : public Classifier {
 public:
  LogisticRegression(std::size_t n_features, std::size_t n_classes, std::vector<double> coef,
                     std::vector<double> intercept)
      : n_features_(n_features),
        n_classes_(n_classes),
        coef_(std::move(coef)),
        intercept_(std::move(intercept)) {}

  std::size_t n_features() const override { return n_features_; }
  std::size_t n_classes() const override { return n_classes_; }

  void predict_proba(const double* rows, std::size_t n_rows, double* out) const override {
    const std::size_t k = intercept_.size();
    for (std::size_t r = 0; r < n_rows; ++r) {
      const double* x = rows + r * n_features_;
      double* proba = out + r * n_classes_;
      if (k == 1) {
        // Two classes: scikit-learn's expit (scipy: 1 / (1 + exp(-z))) of one decision.
        const double p1 = 1.0 / (1.0 + std::exp(-decision(x, 0)));
        proba[0] = 1.0 - p1;
        proba[1] = p1;
        continue;
      }
      // Softmax with the row's maximum subtracted first, as sklearn.utils.extmath.softmax.
      for (std::size_t j = 0; j < k; ++j) proba[j] = decision(x, j);
      const double top = *std::max_element(proba, proba + k);
      double total = 0.0;
      for (std::size_t j = 0; j < k; ++j) {
        proba[j] = std::exp(proba[j] - top);
        total += proba[j];
      }
      for (std::size_t j = 0; j < k; ++j) proba[j] /= total;
    }
  }

 private:
  // x . coef[j] + intercept[j], in that order (numpy: X @ coef.T + intercept).
  double decision(const double* x, std::size_t j) const {
    const double* w = coef_.data() + j * n_features_;
    double dot = 0.0;
    for (std::size_t i = 0; i < n_features_; ++i) dot += x[i] * w[i];
    return dot + intercept_[j];
  }

  std::size_t n_features_;
  std::size_t n_classes_;
  std::vector<double> coef_;       // k x n_features, row-major
  std::vector<double> intercept_;  // k
};

}  // namespace

std::unique_ptr<const Classifier> make_logistic_regression(const Json& doc,
                                                           const CommonFields& common) {
  const Json& coef_rows = list(field(doc, "coef"), "field 'coef'");
  const std::size_t k = coef_rows.size();
  const std::size_t expected = common.n_classes == 2 ? 1 : common.n_classes;
  if (k != expected) {
    throw ModelError("field 'coef' has " + std::to_string(k) + " rows but " +
                     std::to_string(common.n_classes) + " classes need " +
                     std::to_string(expected));
  }
  std::vector<double> coef;
  coef.reserve(k * common.n_features);
  for (std::size_t j = 0; j < k; ++j) {
    const auto row = number_list(coef_rows[j], "coef row " + std::to_string(j), common.n_features);
    coef.insert(coef.end(), row.begin(), row.end());
  }
  auto intercept = number_list(field(doc, "intercept"), "field 'intercept'", k);
  return std::make_unique<LogisticRegression>(common.n_features, common.n_classes, std::move(coef),
                                              std::move(intercept));
}

}  // namespace aimp::model::detail
