#include <shrink/core/error.hpp>
#include <shrink/core/logging.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <optional>
#include <sstream>

namespace shrink::logging {
namespace {

const char* const kNames[] = {"trace", "debug", "info", "warn", "error", "off"};
const spdlog::level::level_enum kLevels[] = {spdlog::level::trace, spdlog::level::debug,
                                             spdlog::level::info,  spdlog::level::warn,
                                             spdlog::level::err,   spdlog::level::off};

std::optional<spdlog::level::level_enum> parse_level(const std::string& name) {
  for (int i = 0; i < 6; ++i) {
    if (name == kNames[i]) return kLevels[i];
  }
  if (name == "warning") return spdlog::level::warn;  // spdlog's own spellings
  if (name == "err") return spdlog::level::err;
  return std::nullopt;
}

// spdlog's SPDLOG_LEVEL convention: "debug", or per logger "shrink=debug,off" (a bare level is
// the default for loggers not named). Returns the level text for the "shrink" logger, or "".
std::string spdlog_level_for_shrink(const std::string& spec) {
  std::string fallback;
  std::stringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) {
      fallback = item;
    } else if (item.substr(0, eq) == "shrink") {
      return item.substr(eq + 1);
    }
  }
  return fallback;
}

// The level the environment asks for: SHRINK_LOG, else SPDLOG_LEVEL, else info. An unusable
// value is reported once (in `problem`) and ignored.
spdlog::level::level_enum level_from_environment(std::string& problem) {
  for (const char* variable : {"SHRINK_LOG", "SPDLOG_LEVEL"}) {
    const char* value = std::getenv(variable);
    if (value == nullptr || value[0] == '\0') continue;
    const std::string text =
        std::string(variable) == "SHRINK_LOG" ? std::string(value) : spdlog_level_for_shrink(value);
    if (text.empty()) continue;
    if (auto level = parse_level(text)) return *level;
    problem = std::string(variable) + " is '" + value +
              "', not one of trace, debug, info, warn, error, off; logging at info";
    return spdlog::level::info;
  }
  return spdlog::level::info;
}

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = spdlog::stderr_color_mt("shrink");
    l->set_pattern("shrink: %^%l%$: %v");
    std::string problem;
    l->set_level(level_from_environment(problem));
    if (!problem.empty()) l->warn(problem);
    return l;
  }();
  return *instance;
}

}  // namespace

void set_level(const std::string& level) {
  if (auto parsed = parse_level(level)) {
    logger().set_level(*parsed);
    return;
  }
  throw Error("log level '" + level + "' is not one of trace, debug, info, warn, error, off");
}

void debug(const std::string& message) { logger().debug(message); }
void info(const std::string& message) { logger().info(message); }
void warn(const std::string& message) { logger().warn(message); }
void error(const std::string& message) { logger().error(message); }

}  // namespace shrink::logging
