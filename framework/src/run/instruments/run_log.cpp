#include <shrink/core/files.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/instruments.hpp>
#include <shrink/run/pass.hpp>

#include <ctime>
#include <filesystem>

namespace shrink {
namespace {

// "06:52:01 " (UTC): when a line was said.
std::string stamp() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[16];
  std::strftime(text, sizeof text, "%H:%M:%S ", &utc);
  return text;
}

}  // namespace

PassMode RunLog::before_pass(const Pass& pass, RunContext& context) {
  // The last pass moves the staging folder into place: the log goes in with the results.
  if (pass.name() == "publish") {
    for (const std::string& line : context.summary.latency) on_line(line);
    std::filesystem::create_directories(context.staging);
    write_file_atomically(std::filesystem::path(context.staging) / "run.log", text_);
  }
  return PassMode::kRun;
}

void RunLog::on_epoch(const EpochEnd& e, RunContext& context) {
  context.history.push_back({{"phase", e.phase},
                             {"epoch", e.epoch},
                             {"epochs", e.epochs},
                             {"loss", e.loss},
                             {"accuracy", e.accuracy},
                             {"lr", e.lr},
                             {"seconds", e.seconds},
                             {"images", e.images}});
  text_ += stamp() + epoch_line(e) + "\n";
}

void RunLog::on_line(const std::string& line) { text_ += stamp() + line + "\n"; }

}  // namespace shrink
