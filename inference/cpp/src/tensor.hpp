// Tensor element types of the Open Inference Protocol and their conversion to the
// float64 values the models compute with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace aimp::tensor {

// Tensor data that does not fit its datatype or shape; what() says how.
class TensorError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Kind { Float, Signed, Unsigned, Bool };

struct Datatype {
  const char* name;  // "FP64", "INT32", ...
  std::size_t size;  // bytes per element in the binary form
  Kind kind;
  // Appends `count` little-endian elements from `bytes` to `out` as float64.
  void (*append_binary)(const char* bytes, std::size_t count, std::vector<double>& out);
};

// The datatype named `name`, or nullptr when inputs of that type are not accepted.
const Datatype* find_datatype(const std::string& name);

// "FP64, FP32, ..." for messages.
std::string accepted_datatypes();

// Appends the elements of `data` (flat or nested lists of JSON scalars) to `out` as float64,
// rounding FP32 values to float32 first as a float32 tensor holds them. `what` names the
// tensor in messages.
void append_json_elements(const Datatype& type, const nlohmann::json& data, const std::string& what,
                          std::vector<double>& out);

// Little-endian bytes of float64 / int64 values (the binary tensor data extension).
std::string to_bytes(const std::vector<double>& values);
std::string to_bytes(const std::vector<std::int64_t>& values);

}  // namespace aimp::tensor
