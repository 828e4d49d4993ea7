// Internal to the model layer: the constructors of each model kind and the helpers
// they share to read a document's fields with messages that name the field.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model.hpp"

namespace aimp::model::detail {

using Json = nlohmann::json;

// What every kind receives besides its own fields, already validated.
struct CommonFields {
  std::size_t n_features;
  std::size_t n_classes;
};

std::unique_ptr<const Classifier> make_logistic_regression(const Json& doc,
                                                           const CommonFields& common);
std::unique_ptr<const Classifier> make_tree_ensemble(const Json& doc, const CommonFields& common);

// doc[name]; throws ModelError("missing field 'name'") when absent.
const Json& field(const Json& doc, const std::string& name);

// A JSON list of numbers of exactly `size` entries (what = "coef row 2" etc. for messages).
std::vector<double> number_list(const Json& value, const std::string& what, std::size_t size);

// A JSON list of integers of exactly `size` entries.
std::vector<long long> integer_list(const Json& value, const std::string& what, std::size_t size);

// A JSON list (of any entries); throws unless it is one.
const Json& list(const Json& value, const std::string& what);

}  // namespace aimp::model::detail
