#include "http_server.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "log.hpp"

namespace aimp::http {
namespace {

using Handler = std::function<protocol::Reply(const httplib::Request&)>;

struct Route {
  const char* method;  // "GET" or "POST"
  // A path where each {} stands for one segment: the model name, then the version.
  std::string path;
  Handler handle;
};

// The route's path as the regular expression cpp-httplib matches, {} capturing a segment.
std::string route_regex(const std::string& path) {
  std::string regex;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path.compare(i, 2, "{}") == 0) {
      regex += "([^/]+)";
      ++i;
    } else {
      regex += path[i];
    }
  }
  return regex;
}

// Whether `path` fits a route's path (to tell 405 from 404 without more regex code).
bool fits(std::string_view path, std::string_view route) {
  while (!route.empty()) {
    if (route.substr(0, 2) == "{}") {
      const std::size_t end = std::min(path.find('/'), path.size());
      if (end == 0) return false;
      path.remove_prefix(end);
      route.remove_prefix(2);
    } else {
      if (path.empty() || path.front() != route.front()) return false;
      path.remove_prefix(1);
      route.remove_prefix(1);
    }
  }
  return path.empty();
}

// Connections are kept alive this long between requests (cpp-httplib's default).
constexpr time_t kKeepAliveTimeoutS = 5;
// Requests per connection before the server closes it; high, because the sidecar reuses
// its connections and each reconnect costs a handshake.
constexpr std::size_t kKeepAliveMaxRequests = 1000;
// After the last in-flight request has finished, workers get this long to wind down before
// stop() reports the ones still waiting on idle kept-alive connections.
constexpr auto kWorkerGrace = std::chrono::milliseconds(100);

// cpp-httplib compresses a body whose Content-Type is exactly "application/json" when the
// client accepts gzip or br (brotli at its slowest quality). The pod's client is its sidecar
// on the same host, where compressing costs far more than it saves, so JSON replies name
// their charset and go out as they are.
std::string wire_content_type(const std::string& content_type) {
  return content_type == "application/json" ? "application/json; charset=utf-8" : content_type;
}

void send(const protocol::Reply& reply, httplib::Response& res) {
  res.status = reply.status;
  res.set_content(reply.body, wire_content_type(reply.content_type));
  if (reply.header_length > 0) {
    res.set_header(protocol::kHeaderLengthHeader, std::to_string(reply.header_length));
  }
}

std::string capture(const httplib::Request& req, std::size_t index) {
  return req.matches.size() > index ? req.matches[index].str() : std::string();
}

// The message of an {"error": ...} body, or "" for any other body.
std::string error_message(const std::string& body) {
  const auto parsed = nlohmann::json::parse(body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_string()) {
    return parsed["error"].get<std::string>();
  }
  return "";
}

// Whether this worker thread counted the request it is serving as in flight. Requests are
// counted from routing (headers read) until cpp-httplib's logger runs, after the reply has
// been written; both run on the request's worker thread.
thread_local bool t_counted = false;

}  // namespace

struct PodServer::Impl {
  Impl(const protocol::Service& service_, ServerOptions options_)
      : service(service_), options(std::move(options_)) {}

  const protocol::Service& service;
  ServerOptions options;
  httplib::Server server;
  std::vector<Route> routes;
  std::atomic<bool> accepting{true};  // false from stop() on: readiness says 503

  std::mutex mutex;
  std::condition_variable changed;  // in_flight or listener_done changed
  std::size_t in_flight = 0;
  bool listener_done = false;
  std::thread listener;

  void define_routes();
  void configure();
  void on_error(const httplib::Request& req, httplib::Response& res) const;
  void on_finished(const httplib::Request& req, const httplib::Response& res);
  void begin_request();
  void end_request();
};

void PodServer::Impl::define_routes() {
  const auto name = [](const httplib::Request& req) { return capture(req, 1); };
  const auto version = [](const httplib::Request& req) { return capture(req, 2); };
  const auto metadata = [this, name, version](const httplib::Request& req) {
    return service.model_metadata(name(req), version(req));
  };
  const auto model_ready = [this, name, version](const httplib::Request& req) {
    return service.model_ready(name(req), version(req), accepting.load());
  };
  const auto infer = [this, name, version](const httplib::Request& req) {
    const bool binary = req.has_header(protocol::kHeaderLengthHeader);
    const std::string header_length =
        binary ? req.get_header_value(protocol::kHeaderLengthHeader) : std::string();
    return service.infer(name(req), version(req), req.body, binary ? &header_length : nullptr);
  };
  const auto server_metadata = [this](const httplib::Request&) {
    return service.server_metadata();
  };
  routes = {
      {"GET", "/v2/health/live", [this](const httplib::Request&) { return service.live(); }},
      {"GET", "/v2/health/ready",
       [this](const httplib::Request&) { return service.ready(accepting.load()); }},
      {"GET", "/v2", server_metadata},
      {"GET", "/v2/", server_metadata},
      {"GET", "/v2/models/{}", metadata},
      {"GET", "/v2/models/{}/versions/{}", metadata},
      {"GET", "/v2/models/{}/ready", model_ready},
      {"GET", "/v2/models/{}/versions/{}/ready", model_ready},
      {"POST", "/v2/models/{}/infer", infer},
      {"POST", "/v2/models/{}/versions/{}/infer", infer},
  };
}

void PodServer::Impl::configure() {
  define_routes();
  for (const Route& route : routes) {
    auto handler = [handle = route.handle](const httplib::Request& req, httplib::Response& res) {
      send(handle(req), res);
    };
    if (std::string(route.method) == "GET") {
      server.Get(route_regex(route.path), handler);
    } else {
      server.Post(route_regex(route.path), handler);
    }
  }
  const std::size_t threads = options.threads;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.set_tcp_nodelay(true);  // replies go out in two writes; Nagle would hold the second
  server.set_keep_alive_timeout(kKeepAliveTimeoutS);
  server.set_keep_alive_max_count(kKeepAliveMaxRequests);
  server.set_payload_max_length(options.max_request_bytes);
  server.set_pre_routing_handler([this](const httplib::Request&, httplib::Response&) {
    if (!t_counted) {
      t_counted = true;
      begin_request();
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        on_error(req, res);
        return httplib::Server::HandlerResponse::Handled;
      }));
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr failure) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(failure);
        } catch (const std::exception& err) {
          what = err.what();
        } catch (...) {
        }
        send(protocol::error(500, "internal error: " + what), res);
      });
  server.set_logger(
      [this](const httplib::Request& req, const httplib::Response& res) { on_finished(req, res); });
}

// A JSON body for the replies cpp-httplib makes itself (no route, body too large, ...).
void PodServer::Impl::on_error(const httplib::Request& req, httplib::Response& res) const {
  std::string message;
  if (res.status == 404) {
    std::string allowed;
    for (const Route& route : routes) {
      if (route.method != req.method && fits(req.path, route.path)) allowed = route.method;
    }
    if (!allowed.empty()) {
      res.status = 405;
      res.set_header("Allow", allowed);
      message = req.method + " is not allowed on " + req.path + "; use " + allowed;
    } else {
      message = "no route for " + req.method + " " + req.path +
                "; this server speaks the Open Inference Protocol: /v2, /v2/health/live, "
                "/v2/health/ready, /v2/models/{name}[/versions/{v}][/ready], "
                "POST /v2/models/{name}[/versions/{v}]/infer";
    }
  } else if (res.status == 413) {
    message = "the request body is larger than this server's limit of " +
              std::to_string(options.max_request_bytes >> 20) +
              " MiB; send smaller batches or start the pod with a larger --max-request-mib";
  } else if (res.status == 400) {
    message = "malformed HTTP request (request line, headers, body length or encoding)";
  } else {
    message = "the request failed with HTTP status " + std::to_string(res.status);
  }
  send(protocol::error(res.status, message), res);
}

void PodServer::Impl::on_finished(const httplib::Request& req, const httplib::Response& res) {
  if (t_counted) {
    t_counted = false;
    end_request();
  }
  if (res.status < 400) return;
  nlohmann::json fields = {{"method", req.method},
                           {"path", req.path},
                           {"status", res.status},
                           {"error", error_message(res.body)}};
  if (res.status >= 500 && !(res.status == 503 && !accepting.load())) {
    log::error("request failed", fields);
  } else {
    log::warning("request rejected", fields);
  }
}

void PodServer::Impl::begin_request() {
  std::lock_guard<std::mutex> lock(mutex);
  ++in_flight;
}

void PodServer::Impl::end_request() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    --in_flight;
  }
  changed.notify_all();
}

PodServer::PodServer(const protocol::Service& service, ServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {
  impl_->configure();
}

PodServer::~PodServer() {
  if (!impl_->listener.joinable()) return;
  impl_->server.stop();
  impl_->listener.join();  // waits for workers on idle connections (keep-alive timeout)
}

void PodServer::start() {
  Impl& impl = *impl_;
  const std::string address = impl.options.host + ":" + std::to_string(impl.options.port);
  if (!impl.server.bind_to_port(impl.options.host, impl.options.port)) {
    throw std::runtime_error("cannot listen on " + address +
                             " (is the port in use, or the host not an address of this machine?)");
  }
  impl.listener = std::thread([&impl] {
    impl.server.listen_after_bind();
    {
      std::lock_guard<std::mutex> lock(impl.mutex);
      impl.listener_done = true;
    }
    impl.changed.notify_all();
  });
  // stop() only takes effect once the listener runs; wait for it so stop() cannot be lost.
  std::unique_lock<std::mutex> lock(impl.mutex);
  while (!impl.server.is_running() && !impl.listener_done) {
    impl.changed.wait_for(lock, std::chrono::milliseconds(1));
  }
  if (impl.listener_done) throw std::runtime_error("the server on " + address + " ended at once");
}

bool PodServer::running() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return !impl_->listener_done;
}

StopResult PodServer::stop(std::chrono::milliseconds drain_timeout) {
  Impl& impl = *impl_;
  impl.accepting = false;
  impl.server.stop();  // closes the listening socket; connections end after their request
  const auto deadline = std::chrono::steady_clock::now() + drain_timeout;
  std::unique_lock<std::mutex> lock(impl.mutex);
  const bool drained = impl.changed.wait_until(lock, deadline, [&] { return impl.in_flight == 0; });
  impl.changed.wait_for(lock, kWorkerGrace, [&] { return impl.listener_done; });
  return StopResult{drained, impl.in_flight, impl.listener_done};
}

}  // namespace aimp::http
