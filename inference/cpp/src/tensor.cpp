#include "tensor.hpp"

#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the binary tensor extension is little-endian; this build assumes a little-endian host"
#endif

namespace aimp::tensor {
namespace {

using Json = nlohmann::json;

template <typename T>
void append_as_double(const char* bytes, std::size_t count, std::vector<double>& out) {
  out.reserve(out.size() + count);
  for (std::size_t i = 0; i < count; ++i) {
    T value;
    std::memcpy(&value, bytes + i * sizeof(T), sizeof(T));
    out.push_back(static_cast<double>(value));
  }
}

// BOOL: one byte per element; any non-zero byte is true.
void append_bools(const char* bytes, std::size_t count, std::vector<double>& out) {
  out.reserve(out.size() + count);
  for (std::size_t i = 0; i < count; ++i) out.push_back(bytes[i] != 0 ? 1.0 : 0.0);
}

// FP16, BF16 and BYTES are refused: scikit-learn models compute in float64, and a
// half-precision or string input would be a client mistake rather than a need.
constexpr Datatype kDatatypes[] = {
    {"FP64", 8, Kind::Float, &append_as_double<double>},
    {"FP32", 4, Kind::Float, &append_as_double<float>},
    {"INT64", 8, Kind::Signed, &append_as_double<std::int64_t>},
    {"INT32", 4, Kind::Signed, &append_as_double<std::int32_t>},
    {"INT16", 2, Kind::Signed, &append_as_double<std::int16_t>},
    {"INT8", 1, Kind::Signed, &append_as_double<std::int8_t>},
    {"UINT64", 8, Kind::Unsigned, &append_as_double<std::uint64_t>},
    {"UINT32", 4, Kind::Unsigned, &append_as_double<std::uint32_t>},
    {"UINT16", 2, Kind::Unsigned, &append_as_double<std::uint16_t>},
    {"UINT8", 1, Kind::Unsigned, &append_as_double<std::uint8_t>},
    {"BOOL", 1, Kind::Bool, &append_bools},
};

// Largest magnitude an integer type holds (as unsigned so that INT64/UINT64 fit).
std::uint64_t max_of(const Datatype& type) {
  const unsigned bits = static_cast<unsigned>(type.size * 8);
  if (type.kind == Kind::Unsigned) {
    return bits == 64 ? std::numeric_limits<std::uint64_t>::max() : (std::uint64_t{1} << bits) - 1;
  }
  return (std::uint64_t{1} << (bits - 1)) - 1;
}

[[noreturn]] void reject(const std::string& what, std::size_t index, const Datatype& type,
                         const std::string& problem) {
  throw TensorError(what + " element " + std::to_string(index) + " " + problem + "; datatype " +
                    type.name + " needs " +
                    (type.kind == Kind::Float  ? "numbers"
                     : type.kind == Kind::Bool ? "true or false"
                                               : "integers in its range"));
}

double element(const Datatype& type, const Json& v, const std::string& what, std::size_t index) {
  switch (type.kind) {
    case Kind::Float:
      if (!v.is_number()) reject(what, index, type, std::string("is a ") + v.type_name());
      return type.size == 4 ? static_cast<double>(static_cast<float>(v.get<double>()))
                            : v.get<double>();
    case Kind::Bool:
      if (!v.is_boolean()) reject(what, index, type, std::string("is a ") + v.type_name());
      return v.get<bool>() ? 1.0 : 0.0;
    case Kind::Signed:
    case Kind::Unsigned:
      break;
  }
  if (!v.is_number_integer()) {
    reject(what, index, type,
           v.is_number() ? "is not an integer" : std::string("is a ") + v.type_name());
  }
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > max_of(type)) reject(what, index, type, "is out of range");
    return static_cast<double>(u);
  }
  const auto s = v.get<std::int64_t>();
  if (type.kind == Kind::Unsigned && s < 0) reject(what, index, type, "is negative");
  if (type.kind == Kind::Signed && s < -static_cast<std::int64_t>(max_of(type)) - 1) {
    reject(what, index, type, "is out of range");
  }
  return static_cast<double>(s);
}

// Nesting deeper than this is refused rather than followed (bounded recursion).
constexpr int kMaxDepth = 32;

// Appends the scalars of `data` in row-major order; `first` is the tensor's first
// element in `out`, so that messages count elements from the tensor's start.
void flatten(const Datatype& type, const Json& data, const std::string& what, int depth,
             std::size_t first, std::vector<double>& out) {
  if (!data.is_array()) {
    out.push_back(element(type, data, what, out.size() - first));
    return;
  }
  if (depth >= kMaxDepth) {
    throw TensorError(what + " data is nested deeper than " + std::to_string(kMaxDepth) +
                      " lists; send it flat in row-major order");
  }
  for (const Json& entry : data) flatten(type, entry, what, depth + 1, first, out);
}

template <typename T>
std::string raw_bytes(const std::vector<T>& values) {
  std::string bytes(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

}  // namespace

const Datatype* find_datatype(const std::string& name) {
  for (const Datatype& type : kDatatypes) {
    if (name == type.name) return &type;
  }
  return nullptr;
}

std::string accepted_datatypes() {
  std::string names;
  for (const Datatype& type : kDatatypes) {
    names += names.empty() ? "" : ", ";
    names += type.name;
  }
  return names;
}

void append_json_elements(const Datatype& type, const Json& data, const std::string& what,
                          std::vector<double>& out) {
  flatten(type, data, what, 0, out.size(), out);
}

std::string to_bytes(const std::vector<double>& values) { return raw_bytes(values); }
std::string to_bytes(const std::vector<std::int64_t>& values) { return raw_bytes(values); }

}  // namespace aimp::tensor
