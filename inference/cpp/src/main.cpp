// aimp C++ pod: serves one scikit-learn model (portable JSON) over the Open Inference Protocol.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include "http_server.hpp"
#include "log.hpp"
#include "model.hpp"
#include "options.hpp"
#include "protocol.hpp"
#include "signals.hpp"

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;

int fail(const std::string& message, const nlohmann::json& fields = nlohmann::json::object()) {
  aimp::log::error(message, fields);
  std::cerr << "aimp-cpp-pod: " << message << "\n";
  return kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  aimp::signals::block_stop_signals();  // before any thread starts, so all inherit the mask
  aimp::Options options;
  try {
    options = aimp::parse_options(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const aimp::UsageError& err) {
    std::cerr << "aimp-cpp-pod: " << err.what() << "\n" << aimp::usage(argv[0]);
    return kExitUsage;
  }
  if (options.help) {
    std::cout << aimp::usage(argv[0]);
    return 0;
  }
  aimp::log::set_context({{"service", "aimp-cpp-pod"}, {"model", options.name}});

  aimp::model::LoadedModel model;
  try {
    model = aimp::model::load_model_file(options.model_file);
  } catch (const aimp::model::ModelError& err) {
    return fail(err.what(), {{"model_file", options.model_file}});
  }
  const nlohmann::json model_fields = {{"model_file", options.model_file},
                                       {"kind", model.kind},
                                       {"n_features", model.classifier->n_features()},
                                       {"n_classes", model.classifier->n_classes()}};
  const aimp::protocol::Service service({"aimp-cpp-pod", AIMP_POD_VERSION}, options.name,
                                        std::move(model));
  aimp::http::PodServer server(
      service, {options.host, options.port, options.threads, options.max_request_mib << 20});
  try {
    server.start();
  } catch (const std::exception& err) {
    return fail(err.what());
  }
  nlohmann::json started = model_fields;
  started.update({{"host", options.host},
                  {"port", options.port},
                  {"threads", options.threads},
                  {"pid", static_cast<long>(getpid())}});
  aimp::log::info("started", started);

  const int signal = aimp::signals::wait_for_stop_signal([&] { return server.running(); });
  if (signal == 0) return fail("the HTTP listener stopped unexpectedly");
  aimp::log::info("stopping", {{"signal", signal}, {"drain_timeout_s", options.drain_timeout_s}});
  const auto drain = std::chrono::milliseconds(static_cast<long>(options.drain_timeout_s * 1000));
  const aimp::http::StopResult result = server.stop(drain);
  const nlohmann::json stopped = {{"drained", result.drained}, {"in_flight", result.in_flight}};
  if (result.drained) {
    aimp::log::info("stopped", stopped);
  } else {
    aimp::log::warning("stopped before every in-flight request finished", stopped);
  }
  if (!result.workers_finished) {
    // Only workers idling on kept-alive connections are left (or requests past the drain
    // timeout): end now rather than wait out their keep-alive timeout; the OS closes them.
    std::fflush(stdout);
    std::_Exit(0);
  }
  return 0;
}
