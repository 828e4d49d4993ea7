// Reading an inference request of the Open Inference Protocol: the JSON header, the
// optional binary tensor data after it, and checks against the served model.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "model.hpp"

namespace aimp::protocol {

inline constexpr const char* kProbabilities = "probabilities";
inline constexpr const char* kLabel = "label";

// A request the protocol or the model cannot accept; what() is the message for the client.
class BadRequest : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RequestedOutput {
  std::string name;  // kProbabilities or kLabel
  bool binary;       // sent as raw bytes after the JSON header
};

struct InferRequest {
  std::optional<std::string> id;
  std::size_t n_rows = 0;
  std::vector<double> rows;  // n_rows x n_features, row-major, all finite
  std::vector<RequestedOutput> outputs;
};

// The request in `body`; `header_length` is the Inference-Header-Content-Length header's
// value (nullptr when absent: the whole body is JSON). Throws BadRequest saying what is wrong.
InferRequest parse_infer_request(std::string_view body, const std::string* header_length,
                                 const model::LoadedModel& model);

}  // namespace aimp::protocol
