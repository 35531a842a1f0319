#include <shrink/run/context.hpp>
#include <shrink/run/instruments.hpp>

#include "run/run_state.hpp"

#include <filesystem>

namespace shrink {

void CheckpointWriter::on_epoch(const EpochEnd& epoch, RunContext& context) {
  if (epoch.resumable && epoch.optimizer != nullptr) {
    save_run_checkpoint(context, epoch.phase, *epoch.optimizer);
  }
}

void CheckpointWriter::after_run(RunContext& context) {
  // The results are in place; the checkpoint has served its purpose.
  std::error_code ec;
  std::filesystem::remove(std::filesystem::path(context.out_dir) / "checkpoint.pt", ec);
}

}  // namespace shrink
