#include "infer_request.hpp"

#include <cctype>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "protocol.hpp"
#include "tensor.hpp"

namespace aimp::protocol {
namespace {

using Json = nlohmann::json;

std::string shape_text(const std::vector<long long>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? "," : "") + std::to_string(shape[i]);
  return text + "]";
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; clients need the rest.
std::string without_exception_tag(const std::string& message) {
  const auto end = message.find("] ");
  return message.rfind("[json.exception.", 0) == 0 && end != std::string::npos
             ? message.substr(end + 2)
             : message;
}

// The JSON header's length from the Inference-Header-Content-Length header.
std::size_t header_length_of(const std::string& value, std::size_t body_size) {
  std::size_t length = 0;
  bool digits = !value.empty() && value.size() <= 18;
  for (char c : value) {
    digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (digits) length = length * 10 + static_cast<std::size_t>(c - '0');
  }
  if (!digits || length > body_size) {
    throw BadRequest(std::string("header ") + kHeaderLengthHeader + " is '" + value +
                     "' but must be the JSON header's byte length, at most the body's " +
                     std::to_string(body_size) + " bytes");
  }
  return length;
}

bool bool_parameter(const Json& owner, const char* name, const std::string& where, bool fallback) {
  const auto params = owner.find("parameters");
  if (params == owner.end()) return fallback;
  if (!params->is_object()) throw BadRequest(where + " 'parameters' must be a JSON object");
  const auto value = params->find(name);
  if (value == params->end()) return fallback;
  if (!value->is_boolean())
    throw BadRequest(where + " parameter '" + name + "' must be true or false");
  return value->get<bool>();
}

std::vector<long long> shape_of(const Json& input, const std::string& what) {
  const auto shape = input.find("shape");
  if (shape == input.end() || !shape->is_array()) {
    throw BadRequest(what + " needs a 'shape' list, e.g. [rows, features]");
  }
  std::vector<long long> dims;
  for (const Json& dim : *shape) {
    if (!dim.is_number_integer() || dim.get<long long>() < 0) {
      throw BadRequest(what + " has shape " + shape->dump() +
                       "; dimensions must be non-negative integers");
    }
    dims.push_back(dim.get<long long>());
  }
  return dims;
}

// Reads the one input tensor into request.rows, checking it against the model.
void read_input(const Json& input, const model::LoadedModel& model, std::string_view binary,
                std::size_t& binary_offset, bool has_binary_section, InferRequest& request) {
  if (!input.is_object()) throw BadRequest("each entry of 'inputs' must be a JSON object");
  const auto name = input.find("name");
  if (name == input.end() || !name->is_string()) throw BadRequest("an input has no 'name' string");
  const std::size_t n_features = model.classifier->n_features();
  const std::string expected_shape = "[-1," + std::to_string(n_features) + "]";
  if (*name != model.input_name) {
    throw BadRequest("unknown input '" + name->get<std::string>() +
                     "'; the model's only input is '" + model.input_name + "' with shape " +
                     expected_shape);
  }
  const std::string what = "input '" + model.input_name + "'";

  const auto datatype_json = input.find("datatype");
  if (datatype_json == input.end() || !datatype_json->is_string()) {
    throw BadRequest(what + " needs a 'datatype' string, e.g. \"FP64\"");
  }
  const std::string datatype_name = datatype_json->get<std::string>();
  const tensor::Datatype* datatype = tensor::find_datatype(datatype_name);
  if (datatype == nullptr) {
    throw BadRequest(what + " has datatype " + datatype_name + " but the model takes one of " +
                     tensor::accepted_datatypes() + " (FP64 preferred)");
  }

  const auto shape = shape_of(input, what);
  if (shape.size() != 2 || shape[1] != static_cast<long long>(n_features)) {
    throw BadRequest(what + " has shape " + shape_text(shape) + " but the model needs " +
                     expected_shape);
  }
  const auto n_rows = static_cast<std::size_t>(shape[0]);
  if (n_rows > std::numeric_limits<std::size_t>::max() / 8 / n_features) {
    throw BadRequest(what + " has shape " + shape_text(shape) + ", far too many rows");
  }
  const std::size_t count = n_rows * n_features;
  // Every value takes at least one byte of the body, JSON or binary: a larger shape is a
  // mistake, found here before any memory is set aside for it.
  if (count > binary.size()) {
    throw BadRequest(what + " has shape " + shape_text(shape) + ", " + std::to_string(count) +
                     " values, more than a body of " + std::to_string(binary.size()) +
                     " bytes can hold");
  }

  const auto data = input.find("data");
  const auto params = input.find("parameters");
  const bool has_binary_size =
      params != input.end() && params->is_object() && params->contains("binary_data_size");
  if (params != input.end() && params->is_object() && params->contains("shared_memory_region")) {
    throw BadRequest(what + " uses shared memory, which this server does not support");
  }
  if (has_binary_size && data != input.end()) {
    throw BadRequest(what + " has both 'data' and a binary_data_size parameter; send one");
  }
  if (has_binary_size) {
    if (!has_binary_section) {
      throw BadRequest(what + " has a binary_data_size parameter but the request has no " +
                       kHeaderLengthHeader + " header");
    }
    const Json& size = (*params)["binary_data_size"];
    const std::size_t expected_bytes = count * datatype->size;
    if (!size.is_number_integer() || size.get<long long>() < 0 ||
        size.get<std::size_t>() != expected_bytes) {
      throw BadRequest(what + " has binary_data_size " + size.dump() + " but shape " +
                       shape_text(shape) + " of " + datatype_name + " needs " +
                       std::to_string(expected_bytes) + " bytes");
    }
    if (binary.size() - binary_offset < expected_bytes) {
      throw BadRequest(what + " needs " + std::to_string(expected_bytes) +
                       " bytes of binary data but the body has only " +
                       std::to_string(binary.size() - binary_offset) + " after the JSON header");
    }
    request.rows.reserve(count);
    datatype->append_binary(binary.data() + binary_offset, count, request.rows);
    binary_offset += expected_bytes;
  } else {
    if (data == input.end()) {
      throw BadRequest(what + " has no 'data' (or binary_data_size parameter)");
    }
    request.rows.reserve(count);
    try {
      tensor::append_json_elements(*datatype, *data, what, request.rows);
    } catch (const tensor::TensorError& err) {
      throw BadRequest(err.what());
    }
    if (request.rows.size() != count) {
      throw BadRequest(what + " has " + std::to_string(request.rows.size()) +
                       " values but its shape " + shape_text(shape) + " needs " +
                       std::to_string(count));
    }
  }
  for (std::size_t i = 0; i < count; ++i) {
    if (!std::isfinite(request.rows[i])) {
      throw BadRequest(what + " element " + std::to_string(i) +
                       " is NaN or infinite; scikit-learn models refuse such values");
    }
  }
  request.n_rows = n_rows;
}

std::vector<RequestedOutput> read_outputs(const Json& header) {
  const bool binary_default = bool_parameter(header, "binary_data_output", "the request's", false);
  const auto outputs = header.find("outputs");
  if (outputs == header.end()) {
    return {{kProbabilities, binary_default}, {kLabel, binary_default}};
  }
  if (!outputs->is_array()) throw BadRequest("'outputs' must be a list of {\"name\": ...} objects");
  std::vector<RequestedOutput> requested;
  for (const Json& output : *outputs) {
    const auto name = output.is_object() ? output.find("name") : output.end();
    if (!output.is_object() || name == output.end() || !name->is_string()) {
      throw BadRequest("each entry of 'outputs' must be an object with a 'name' string");
    }
    const std::string output_name = name->get<std::string>();
    if (output_name != kProbabilities && output_name != kLabel) {
      throw BadRequest("unknown output '" + output_name + "'; the model's outputs are '" +
                       kProbabilities + "' and '" + kLabel + "'");
    }
    const std::string where = "output '" + output_name + "'";
    if (output.contains("parameters") && output["parameters"].is_object() &&
        output["parameters"].contains("classification")) {
      throw BadRequest(
          where +
          " asks for the classification extension, which this server does not support; the '" +
          std::string(kLabel) + "' output holds the most probable class index");
    }
    requested.push_back(
        {output_name, bool_parameter(output, "binary_data", where, binary_default)});
  }
  return requested;
}

}  // namespace

InferRequest parse_infer_request(std::string_view body, const std::string* header_length,
                                 const model::LoadedModel& model) {
  const std::size_t json_size =
      header_length == nullptr ? body.size() : header_length_of(*header_length, body.size());
  Json header;
  try {
    header = Json::parse(body.substr(0, json_size));
  } catch (const Json::parse_error& err) {
    throw BadRequest("the request body is not valid JSON: " + without_exception_tag(err.what()));
  }
  if (!header.is_object()) {
    throw BadRequest("the request must be a JSON object with an 'inputs' list");
  }
  InferRequest request;
  if (const auto id = header.find("id"); id != header.end()) {
    if (!id->is_string()) throw BadRequest("'id' must be a string");
    request.id = id->get<std::string>();
  }
  const auto inputs = header.find("inputs");
  if (inputs == header.end() || !inputs->is_array() || inputs->empty()) {
    throw BadRequest("the request needs an 'inputs' list with the input '" + model.input_name +
                     "'");
  }
  if (inputs->size() != 1) {
    throw BadRequest("the model takes one input '" + model.input_name + "' but the request has " +
                     std::to_string(inputs->size()));
  }
  std::size_t binary_offset = json_size;
  read_input(inputs->at(0), model, body, binary_offset, header_length != nullptr, request);
  if (binary_offset != body.size()) {
    throw BadRequest("the body has " + std::to_string(body.size() - binary_offset) +
                     " bytes after the JSON header and the inputs' binary data; "
                     "binary_data_size or " +
                     kHeaderLengthHeader + " is wrong");
  }
  request.outputs = read_outputs(header);
  return request;
}

}  // namespace aimp::protocol
