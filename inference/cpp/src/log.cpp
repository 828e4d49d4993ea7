#include "log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace aimp::log {
namespace {

std::mutex g_mutex;
nlohmann::json g_context = nlohmann::json::object();

// "2024-05-01T12:00:00.123Z"
std::string utc_timestamp() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t seconds = system_clock::to_time_t(now);
  const auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[40];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%03dZ", static_cast<int>(millis));
  return text;
}

void write(const char* level, const std::string& message, const nlohmann::json& fields) {
  nlohmann::ordered_json line = {
      {"ts", utc_timestamp()}, {"level", level}, {"logger", "aimp.cpp_pod"}, {"message", message}};
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (const auto& [key, value] : g_context.items()) line[key] = value;
  }
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) line[key] = value;
  }
  // Invalid UTF-8 (e.g. from a request path) is replaced rather than aborting the log line.
  const std::string text =
      line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

void set_context(const nlohmann::json& fields) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_context = fields;
}

void info(const std::string& message, const nlohmann::json& fields) {
  write("INFO", message, fields);
}
void warning(const std::string& message, const nlohmann::json& fields) {
  write("WARNING", message, fields);
}
void error(const std::string& message, const nlohmann::json& fields) {
  write("ERROR", message, fields);
}

}  // namespace aimp::log
