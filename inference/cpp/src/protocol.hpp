// The Open Inference Protocol (KServe v2) for one served model: request bodies in,
// replies out. No HTTP here: the server layer maps routes onto these calls.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "model.hpp"

namespace aimp::protocol {

// What to send back: status, body and content type. For the binary tensor data
// extension the body is a JSON header followed by raw tensor bytes, and
// header_length (> 0) goes into the Inference-Header-Content-Length header.
struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::size_t header_length = 0;
};

// The protocol's error reply: {"error": message}.
Reply error(int status, const std::string& message);

// The header carrying the JSON header's length in binary requests and replies.
inline constexpr const char* kHeaderLengthHeader = "Inference-Header-Content-Length";

struct ServerInfo {
  std::string name;
  std::string version;
};

// The endpoints of one server serving one model under `model_name`, version "1".
// All calls are const and thread-safe.
class Service {
 public:
  Service(ServerInfo server, std::string model_name, model::LoadedModel model);

  const std::string& model_name() const { return model_name_; }
  const model::LoadedModel& model() const { return model_; }

  Reply live() const;
  // `accepting` is false while the server drains before it stops.
  Reply ready(bool accepting) const;
  Reply server_metadata() const;
  // `version` is empty when the route has none.
  Reply model_metadata(const std::string& name, const std::string& version) const;
  Reply model_ready(const std::string& name, const std::string& version, bool accepting) const;
  // `header_length` is the Inference-Header-Content-Length header's value, nullptr if absent.
  Reply infer(const std::string& name, const std::string& version, std::string_view body,
              const std::string* header_length) const;

 private:
  // The 404 reply when `name`/`version` is not this model, else nothing.
  std::optional<Reply> unknown_model(const std::string& name, const std::string& version) const;

  ServerInfo server_;
  std::string model_name_;
  std::string version_ = "1";
  model::LoadedModel model_;
};

}  // namespace aimp::protocol
