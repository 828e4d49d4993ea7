#include "protocol.hpp"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "infer_request.hpp"
#include "tensor.hpp"

namespace aimp::protocol {
namespace {

using OrderedJson = nlohmann::ordered_json;  // replies keep the protocol's field order

constexpr const char* kPlatform = "sklearn_json";

// Invalid UTF-8 (a model name decoded from the URL, say) is replaced, never a failure.
Reply json_reply(int status, const OrderedJson& body) {
  return Reply{status, body.dump(-1, ' ', false, OrderedJson::error_handler_t::replace),
               "application/json", 0};
}

OrderedJson tensor_header(const char* name, const char* datatype, std::size_t rows,
                          std::size_t columns) {
  return OrderedJson{
      {"name", name}, {"datatype", datatype}, {"shape", OrderedJson::array({rows, columns})}};
}

Reply infer_reply(const std::string& model_name, const std::string& version,
                  const InferRequest& request, const model::LoadedModel& model) {
  const std::size_t n_classes = model.classifier->n_classes();
  std::vector<double> proba(request.n_rows * n_classes);
  model.classifier->predict_proba(request.rows.data(), request.n_rows, proba.data());
  std::vector<std::int64_t> labels(request.n_rows);
  model::argmax_rows(proba.data(), request.n_rows, n_classes, labels.data());

  OrderedJson body{{"model_name", model_name}, {"model_version", version}};
  if (request.id) body["id"] = *request.id;
  body["outputs"] = OrderedJson::array();
  std::string binary;
  for (const RequestedOutput& output : request.outputs) {
    const bool is_proba = output.name == kProbabilities;
    OrderedJson tensor = is_proba ? tensor_header(kProbabilities, "FP64", request.n_rows, n_classes)
                                  : tensor_header(kLabel, "INT64", request.n_rows, 1);
    if (output.binary) {
      const std::string bytes = is_proba ? tensor::to_bytes(proba) : tensor::to_bytes(labels);
      tensor["parameters"] = {{"binary_data_size", bytes.size()}};
      binary += bytes;
    } else if (is_proba) {
      tensor["data"] = proba;
    } else {
      tensor["data"] = labels;
    }
    body["outputs"].push_back(std::move(tensor));
  }
  Reply reply = json_reply(200, body);
  const auto is_binary = [](const RequestedOutput& output) { return output.binary; };
  if (std::any_of(request.outputs.begin(), request.outputs.end(), is_binary)) {
    reply.header_length = reply.body.size();
    reply.body += binary;
    reply.content_type = "application/octet-stream";
  }
  return reply;
}

}  // namespace

Reply error(int status, const std::string& message) {
  return json_reply(status, OrderedJson{{"error", message}});
}

Service::Service(ServerInfo server, std::string model_name, model::LoadedModel model)
    : server_(std::move(server)), model_name_(std::move(model_name)), model_(std::move(model)) {}

Reply Service::live() const { return json_reply(200, OrderedJson{{"live", true}}); }

Reply Service::ready(bool accepting) const {
  if (!accepting) return error(503, "the server is shutting down and accepts no new requests");
  return json_reply(200, OrderedJson{{"ready", true}});
}

Reply Service::server_metadata() const {
  return json_reply(200, OrderedJson{{"name", server_.name},
                                     {"version", server_.version},
                                     {"extensions", OrderedJson::array({"binary_tensor_data"})}});
}

std::optional<Reply> Service::unknown_model(const std::string& name,
                                            const std::string& version) const {
  if (name != model_name_) {
    return error(404, "unknown model '" + name + "'; this server serves '" + model_name_ + "'");
  }
  if (!version.empty() && version != version_) {
    return error(404, "model '" + name + "' has no version '" + version +
                          "'; its only version is '" + version_ + "'");
  }
  return std::nullopt;
}

Reply Service::model_metadata(const std::string& name, const std::string& version) const {
  if (auto missing = unknown_model(name, version)) return *missing;
  const auto columns = [](std::size_t n) { return OrderedJson::array({-1, n}); };
  OrderedJson labels = OrderedJson::array();
  for (const std::string& label : model_.class_labels) labels.push_back(OrderedJson::parse(label));
  OrderedJson body{
      {"name", model_name_}, {"versions", OrderedJson::array({version_})}, {"platform", kPlatform}};
  body["inputs"] =
      OrderedJson::array({OrderedJson{{"name", model_.input_name},
                                      {"datatype", "FP64"},
                                      {"shape", columns(model_.classifier->n_features())}}});
  body["outputs"] = OrderedJson::array(
      {OrderedJson{{"name", kProbabilities},
                   {"datatype", "FP64"},
                   {"shape", columns(model_.classifier->n_classes())}},
       OrderedJson{{"name", kLabel}, {"datatype", "INT64"}, {"shape", columns(1)}}});
  // Not in the protocol's schema; clients need the labels to read the 'label' output.
  body["parameters"] = OrderedJson{{"model_kind", model_.kind}, {"class_labels", labels}};
  return json_reply(200, body);
}

Reply Service::model_ready(const std::string& name, const std::string& version,
                           bool accepting) const {
  if (auto missing = unknown_model(name, version)) return *missing;
  if (!accepting) {
    return error(503, "model '" + model_name_ + "' is not ready: the server is shutting down");
  }
  return json_reply(200, OrderedJson{{"name", model_name_}, {"ready", true}});
}

Reply Service::infer(const std::string& name, const std::string& version, std::string_view body,
                     const std::string* header_length) const {
  if (auto missing = unknown_model(name, version)) return *missing;
  InferRequest request;
  try {
    request = parse_infer_request(body, header_length, model_);
  } catch (const BadRequest& err) {
    return error(400, err.what());
  }
  return infer_reply(model_name_, version_, request, model_);
}

}  // namespace aimp::protocol
