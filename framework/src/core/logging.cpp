#include <shrink/core/error.hpp>
#include <shrink/core/logging.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace shrink::logging {
namespace {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = spdlog::stderr_color_mt("shrink");
    l->set_pattern("shrink: %^%l%$: %v");
    l->set_level(spdlog::level::info);
    return l;
  }();
  return *instance;
}

}  // namespace

void set_level(const std::string& level) {
  static const char* kNames[] = {"trace", "debug", "info", "warn", "error", "off"};
  static const spdlog::level::level_enum kLevels[] = {
      spdlog::level::trace, spdlog::level::debug, spdlog::level::info,
      spdlog::level::warn,  spdlog::level::err,   spdlog::level::off};
  for (int i = 0; i < 6; ++i) {
    if (level == kNames[i]) {
      logger().set_level(kLevels[i]);
      return;
    }
  }
  throw Error("log level '" + level + "' is not one of trace, debug, info, warn, error, off");
}

void debug(const std::string& message) { logger().debug(message); }
void info(const std::string& message) { logger().info(message); }
void warn(const std::string& message) { logger().warn(message); }
void error(const std::string& message) { logger().error(message); }

}  // namespace shrink::logging
