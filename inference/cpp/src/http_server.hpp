// HTTP wiring: cpp-httplib's server and thread pool, the Open Inference Protocol routes
// mapped onto protocol::Service, JSON errors for everything else, and a graceful stop.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "protocol.hpp"

namespace aimp::http {

struct ServerOptions {
  std::string host;
  int port = 0;
  std::size_t threads = 1;
  std::size_t max_request_bytes = 0;
};

struct StopResult {
  bool drained;           // every in-flight request finished within the drain timeout
  std::size_t in_flight;  // requests still running when stop() returned
  bool workers_finished;  // no worker thread is left (idle kept-alive connections hold some)
};

class PodServer {
 public:
  // `service` must outlive the server.
  PodServer(const protocol::Service& service, ServerOptions options);
  ~PodServer();
  PodServer(const PodServer&) = delete;
  PodServer& operator=(const PodServer&) = delete;

  // Binds the address and serves on a thread of its own; throws std::runtime_error
  // naming the address when it cannot be bound.
  void start();

  // False once the listener has ended on its own, without stop().
  bool running() const;

  // Reports not-ready, stops accepting connections, and waits up to `drain_timeout` for
  // the requests in flight to finish.
  StopResult stop(std::chrono::milliseconds drain_timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace aimp::http
