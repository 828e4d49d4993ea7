// Fitted models loaded from the portable scikit-learn JSON ("aimp-sklearn-json/1", written
// by inference/python/src/aimp_inference/export.py) and evaluated in double precision.
//
// A new model kind is one Classifier subclass plus one line in model.cpp's kind table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace aimp::model {

// A model file or document that cannot be served; what() says what is wrong.
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A fitted classifier. Implementations are immutable after construction, so one
// instance serves any number of threads at once.
class Classifier {
 public:
  virtual ~Classifier() = default;
  virtual std::size_t n_features() const = 0;
  virtual std::size_t n_classes() const = 0;
  // rows: n_rows x n_features, row-major; out: n_rows x n_classes, row-major
  // (scikit-learn's predict_proba).
  virtual void predict_proba(const double* rows, std::size_t n_rows, double* out) const = 0;
};

// A loaded model file: the classifier and the document's common fields.
struct LoadedModel {
  std::string kind;                       // "logistic_regression", "tree_ensemble", ...
  std::string input_name;                 // the one input tensor's name
  std::vector<std::string> class_labels;  // JSON text of each class label, column order
  std::unique_ptr<const Classifier> classifier;
};

// The model in `path`; throws ModelError("model file PATH: what is wrong").
LoadedModel load_model_file(const std::string& path);

// The model in a JSON document's text; throws ModelError("what is wrong").
LoadedModel load_model_text(const std::string& text);

// For each row the index of its largest value, ties to the lowest index (numpy's argmax).
void argmax_rows(const double* values, std::size_t n_rows, std::size_t n_columns,
                 std::int64_t* out);

}  // namespace aimp::model
