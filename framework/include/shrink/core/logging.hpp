// The host's logger. Everything goes to stderr so that stdout stays clean for tables and JSON.
//
// The level starts at what the environment says: SHRINK_LOG ("debug"), else spdlog's SPDLOG_LEVEL
// ("debug", or per logger "shrink=debug"), else info. set_level (the CLI's --log-level) overrides
// it.
#pragma once

#include <string>

namespace shrink::logging {

// Sets the level: "trace", "debug", "info", "warn", "error" or "off". Throws shrink::Error on an
// unknown name.
void set_level(const std::string& level);

void debug(const std::string& message);
void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);

}  // namespace shrink::logging
