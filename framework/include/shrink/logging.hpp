// The host's logger. Everything goes to stderr so that stdout stays clean for tables and JSON.
#pragma once

#include <string>

namespace shrink {

// Sets the level: "trace", "debug", "info", "warn", "error" or "off". Throws shrink::Error on an
// unknown name.
void set_log_level(const std::string& level);

void log_debug(const std::string& message);
void log_info(const std::string& message);
void log_warn(const std::string& message);
void log_error(const std::string& message);

}  // namespace shrink
