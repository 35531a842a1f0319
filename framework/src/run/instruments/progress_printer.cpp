#include <shrink/run/instruments.hpp>

#include <iomanip>
#include <ostream>
#include <sstream>

namespace shrink {

ProgressPrinter::ProgressPrinter(std::ostream& out, bool terminal)
    : out_(out), terminal_(terminal) {}

void ProgressPrinter::on_batch(const BatchEnd& b) {
  // A bar on a terminal only: redrawn every 10 batches, so that a log file stays one line an epoch.
  if (!terminal_ || (b.batch % 10 != 1 && b.batch != b.batches)) return;
  const int64_t width = 30, filled = width * b.batch / b.batches;
  out_ << "\r" << b.phase << " epoch " << b.epoch << "/" << b.epochs << " ["
       << std::string(static_cast<std::size_t>(filled), '#')
       << std::string(static_cast<std::size_t>(width - filled), '.') << "] loss " << std::fixed
       << std::setprecision(4) << b.mean_loss << std::defaultfloat << std::flush;
}

std::string epoch_line(const EpochEnd& e) {
  std::ostringstream out;
  out << e.phase << " epoch " << e.epoch << "/" << e.epochs << ": loss " << std::fixed
      << std::setprecision(4) << e.loss << ", accuracy " << e.accuracy << ", lr "
      << std::setprecision(6) << std::defaultfloat << e.lr << ", " << std::fixed
      << std::setprecision(0) << static_cast<double>(e.images) / e.seconds << " images/s, "
      << std::setprecision(1) << e.seconds << " s";
  return out.str();
}

void ProgressPrinter::on_epoch(const EpochEnd& e, RunContext& context) {
  (void)context;
  if (terminal_) out_ << "\r\033[K";
  out_ << epoch_line(e) << std::endl;
}

void ProgressPrinter::on_line(const std::string& line) { out_ << line << std::endl; }

}  // namespace shrink
