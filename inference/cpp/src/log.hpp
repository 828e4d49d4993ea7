// JSON logs on stdout, one object per line, in the fields the Python services use
// (ts, level, logger, message, service) plus any extra fields. Thread-safe.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace aimp::log {

// Fields added to every line from now on (e.g. the model name); call before threads start.
void set_context(const nlohmann::json& fields);

void info(const std::string& message, const nlohmann::json& fields = nlohmann::json::object());
void warning(const std::string& message, const nlohmann::json& fields = nlohmann::json::object());
void error(const std::string& message, const nlohmann::json& fields = nlohmann::json::object());

}  // namespace aimp::log
