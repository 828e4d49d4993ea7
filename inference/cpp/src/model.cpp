#include "model.hpp"

#include <fstream>
#include <sstream>
#include <utility>

#include "model_kinds.hpp"

namespace aimp::model {
namespace {

using detail::Json;

constexpr const char* kFormat = "aimp-sklearn-json/1";

using KindFactory = std::unique_ptr<const Classifier> (*)(const Json&, const detail::CommonFields&);

struct Kind {
  const char* name;
  KindFactory make;
};

// Every model kind this server evaluates; add a line here for a new one.
constexpr Kind kKinds[] = {
    {"logistic_regression", &detail::make_logistic_regression},
    {"tree_ensemble", &detail::make_tree_ensemble},
};

std::string known_kinds() {
  std::string names;
  for (const auto& kind : kKinds) {
    names += names.empty() ? "" : ", ";
    names += kind.name;
  }
  return names;
}

std::size_t positive_size(const Json& doc, const std::string& name) {
  const Json& value = detail::field(doc, name);
  if (!value.is_number_integer() || value.get<long long>() < 1) {
    throw ModelError("field '" + name + "' must be a positive integer, not " + value.dump());
  }
  return value.get<std::size_t>();
}

LoadedModel load_document(const Json& doc) {
  if (!doc.is_object()) {
    throw ModelError("the document must be a JSON object, not " + std::string(doc.type_name()));
  }
  const Json& format = detail::field(doc, "format");
  if (format != kFormat) {
    throw ModelError("field 'format' is " + format.dump() + " but this server reads \"" + kFormat +
                     "\"");
  }
  LoadedModel loaded;
  const Json& kind = detail::field(doc, "kind");
  if (!kind.is_string()) throw ModelError("field 'kind' must be a string");
  loaded.kind = kind.get<std::string>();

  const Json& classes = detail::list(detail::field(doc, "classes"), "field 'classes'");
  if (classes.empty()) throw ModelError("field 'classes' is empty");
  for (const Json& label : classes) {
    if (!label.is_number() && !label.is_string()) {
      throw ModelError("class labels must be numbers or strings, not " + label.dump());
    }
    loaded.class_labels.push_back(label.dump());
  }
  loaded.input_name = "input";
  if (doc.contains("input_name")) {
    const Json& name = doc["input_name"];
    if (!name.is_string() || name.get<std::string>().empty()) {
      throw ModelError("field 'input_name' must be a non-empty string");
    }
    loaded.input_name = name.get<std::string>();
  }
  const detail::CommonFields common{positive_size(doc, "n_features"), classes.size()};

  for (const auto& known : kKinds) {
    if (loaded.kind == known.name) {
      loaded.classifier = known.make(doc, common);
      return loaded;
    }
  }
  throw ModelError("kind \"" + loaded.kind +
                   "\" is not supported; supported kinds: " + known_kinds());
}

}  // namespace

LoadedModel load_model_text(const std::string& text) {
  Json doc;
  try {
    doc = Json::parse(text);
  } catch (const Json::parse_error& err) {
    throw ModelError(std::string("not valid JSON: ") + err.what());
  }
  try {
    return load_document(doc);
  } catch (const Json::exception& err) {  // a type mismatch the checks above did not foresee
    throw ModelError(std::string("unexpected content: ") + err.what());
  }
}

LoadedModel load_model_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelError("model file " + path + ": cannot be opened (does it exist?)");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ModelError("model file " + path + ": read error");
  try {
    return load_model_text(text.str());
  } catch (const ModelError& err) {
    throw ModelError("model file " + path + ": " + err.what());
  }
}

void argmax_rows(const double* values, std::size_t n_rows, std::size_t n_columns,
                 std::int64_t* out) {
  for (std::size_t r = 0; r < n_rows; ++r) {
    const double* row = values + r * n_columns;
    std::size_t best = 0;
    for (std::size_t c = 1; c < n_columns; ++c) {
      if (row[c] > row[best]) best = c;
    }
    out[r] = static_cast<std::int64_t>(best);
  }
}

namespace detail {

const Json& field(const Json& doc, const std::string& name) {
  auto it = doc.find(name);
  if (it == doc.end()) throw ModelError("missing field '" + name + "'");
  return *it;
}

const Json& list(const Json& value, const std::string& what) {
  if (!value.is_array()) {
    throw ModelError(what + " must be a list, not " + std::string(value.type_name()));
  }
  return value;
}

std::vector<double> number_list(const Json& value, const std::string& what, std::size_t size) {
  list(value, what);
  if (value.size() != size) {
    throw ModelError(what + " has " + std::to_string(value.size()) + " entries, expected " +
                     std::to_string(size));
  }
  std::vector<double> numbers;
  numbers.reserve(size);
  for (const Json& entry : value) {
    if (!entry.is_number()) throw ModelError(what + " has a non-number entry " + entry.dump());
    numbers.push_back(entry.get<double>());
  }
  return numbers;
}

std::vector<long long> integer_list(const Json& value, const std::string& what, std::size_t size) {
  list(value, what);
  if (value.size() != size) {
    throw ModelError(what + " has " + std::to_string(value.size()) + " entries, expected " +
                     std::to_string(size));
  }
  std::vector<long long> numbers;
  numbers.reserve(size);
  for (const Json& entry : value) {
    if (!entry.is_number_integer()) {
      throw ModelError(what + " has a non-integer entry " + entry.dump());
    }
    numbers.push_back(entry.get<long long>());
  }
  return numbers;
}

}  // namespace detail
}  // namespace aimp::model
