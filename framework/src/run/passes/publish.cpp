#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>

#include <filesystem>

namespace shrink {

namespace fs = std::filesystem;

void PublishPass::run(RunContext& c) {
  fs::create_directories(c.out_dir);
  std::error_code ec;
  // A result an earlier run left there that this run did not write (model_qat.pt, with
  // export.model off) goes, so that nothing stale sits beside the new report.
  for (const char* name : {"report.json", "calibration.json", "masks.pt", "model_fp32.pt",
                           "model_pruned.pt", "model_qat.pt", "model_int8.pt"}) {
    if (!fs::exists(fs::path(c.staging) / name)) fs::remove(fs::path(c.out_dir) / name, ec);
  }
  for (const auto& entry : fs::directory_iterator(c.staging)) {
    fs::rename(entry.path(), fs::path(c.out_dir) / entry.path().filename());
  }
  fs::remove_all(c.staging, ec);
}

}  // namespace shrink
