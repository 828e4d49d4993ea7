// The pod's command line.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace aimp {

// A command line that cannot be used; what() says why.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model_file;
  std::string name;
  std::string host = "127.0.0.1";  // loopback: the sidecar beside the pod is its only client
  int port = 0;
  // Each open connection holds a worker while it is kept alive, so there are more workers
  // than cores: enough for a sidecar's connection pool.
  std::size_t threads = 32;
  // Larger than any sensible JSON batch for a tabular model; bounds memory per request.
  std::size_t max_request_mib = 64;
  // In-flight requests get this long to finish after SIGTERM (the platform's ~5 s budget).
  double drain_timeout_s = 5.0;
  bool help = false;
};

// Parses argv (without the program name); throws UsageError.
Options parse_options(const std::vector<std::string>& args);

// The --help text.
std::string usage(const std::string& program);

}  // namespace aimp
