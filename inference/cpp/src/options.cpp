#include "options.hpp"

#include <cerrno>
#include <cstdlib>
#include <functional>
#include <map>

namespace aimp {
namespace {

long long integer(const std::string& flag, const std::string& value, long long low,
                  long long high) {
  char* end = nullptr;
  errno = 0;
  const long long number = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0 || number < low || number > high) {
    throw UsageError(flag + " must be an integer from " + std::to_string(low) + " to " +
                     std::to_string(high) + ", not '" + value + "'");
  }
  return number;
}

double seconds(const std::string& flag, const std::string& value) {
  char* end = nullptr;
  const double number = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || !(number >= 0.0 && number <= 3600.0)) {
    throw UsageError(flag + " must be a number of seconds from 0 to 3600, not '" + value + "'");
  }
  return number;
}

}  // namespace

Options parse_options(const std::vector<std::string>& args) {
  Options options;
  using Setter = std::function<void(const std::string&)>;
  const std::map<std::string, Setter> setters = {
      {"--model-file", [&](const std::string& v) { options.model_file = v; }},
      {"--name", [&](const std::string& v) { options.name = v; }},
      {"--host", [&](const std::string& v) { options.host = v; }},
      {"--port",
       [&](const std::string& v) {
         options.port = static_cast<int>(integer("--port", v, 1, 65535));
       }},
      {"--threads",
       [&](const std::string& v) {
         options.threads = static_cast<std::size_t>(integer("--threads", v, 1, 4096));
       }},
      {"--max-request-mib",
       [&](const std::string& v) {
         options.max_request_mib =
             static_cast<std::size_t>(integer("--max-request-mib", v, 1, 65536));
       }},
      {"--drain-timeout-s",
       [&](const std::string& v) { options.drain_timeout_s = seconds("--drain-timeout-s", v); }},
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    if (flag == "--help" || flag == "-h") {
      options.help = true;
      return options;
    }
    std::string value;
    const auto equals = flag.find('=');
    const bool inline_value = flag.rfind("--", 0) == 0 && equals != std::string::npos;
    if (inline_value) {
      value = flag.substr(equals + 1);
      flag = flag.substr(0, equals);
    }
    const auto setter = setters.find(flag);
    if (setter == setters.end()) throw UsageError("unknown option '" + flag + "'");
    if (!inline_value) {
      if (i + 1 >= args.size()) throw UsageError(flag + " needs a value");
      value = args[++i];
    }
    setter->second(value);
  }
  if (options.model_file.empty()) throw UsageError("--model-file is required");
  if (options.name.empty()) throw UsageError("--name is required");
  if (options.port == 0) throw UsageError("--port is required");
  return options;
}

std::string usage(const std::string& program) {
  return "usage: " + program +
         " --model-file PATH --name NAME --port PORT [--host 127.0.0.1]\n"
         "       [--threads 32] [--max-request-mib 64] [--drain-timeout-s 5]\n"
         "\n"
         "Serves one model file in the aimp-sklearn-json/1 format over the Open Inference\n"
         "Protocol (KServe v2, HTTP/JSON and the binary tensor data extension).\n"
         "Logs JSON lines on stdout; stops on SIGTERM or SIGINT after in-flight requests.\n";
}

}  // namespace aimp
