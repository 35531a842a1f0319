// Runs an experiment as named passes sharing one context:
//   prepare -> pretrain -> evaluate-baseline -> compress -> finetune -> evaluate-compressed -> export
// Timing and progress are instruments around the passes. Result files are written to a staging
// folder and moved into place only when the run succeeds, so a failed run leaves nothing that looks
// valid. While training, `checkpoint.pt` in the output folder holds the state after the latest
// whole epoch; `resume` continues from it to the same result, and it is removed when the run ends.
#pragma once

#include <shrink/config/experiment.hpp>
#include <shrink/host/plugin_registry.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace shrink {

struct RunOptions {
  std::string out_dir;  // overrides export.dir when non-empty
  bool print_plan = false;        // check everything, print the resolved pipeline, run nothing
  bool resume = false;            // continue from <out>/checkpoint.pt
  int64_t stop_after_epochs = 0;  // stop (resumably) after this many epochs in all; 0: never
};

struct RunSummary {
  double baseline_accuracy = -1;
  double compressed_accuracy = -1;
  double exported_accuracy = -1;  // exported_file reloaded and evaluated; -1 when not exported
  double int8_accuracy = -1;      // model_int8.pt reloaded and evaluated; -1 when not exported
  double baseline_seconds_per_epoch = 0;
  double compressed_seconds_per_epoch = 0;
  std::string exported_file;  // model_qat.pt; model_fp32.pt without compress stages; "" if none
  bool stopped = false;  // stop_after_epochs was reached; no results were written
  std::string out_dir;
};

// Runs `experiment`; plugins are looked up in `registry` (already discovered). Validates every
// stage before any training, prints progress to stdout, and throws shrink::Error on any failure
// after removing partial results (the checkpoint stays, for `resume`).
RunSummary run_experiment(const Experiment& experiment, PluginRegistry& registry,
                          const RunOptions& options);

}  // namespace shrink
