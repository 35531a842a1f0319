// Runs an experiment as named passes over one context (run/pass.hpp, run/context.hpp):
//   prepare -> pretrain -> evaluate-baseline -> compress[i]... -> calibrate[i]... -> finetune ->
//   measure -> evaluate-compressed -> export-* -> report -> publish
// with instruments around them (run/instruments.hpp): progress, pass timing, checkpoints, resume
// and stop-after-epochs. Result files are written to a staging folder and moved into place only
// when the run succeeds, so a failed run leaves nothing that looks valid. While training,
// `checkpoint.pt` in the output folder holds the state after the latest whole epoch; `resume`
// continues from it to the same result, and it is removed when the run ends.
#pragma once

#include <shrink/run/context.hpp>
#include <shrink/run/instrument.hpp>
#include <shrink/run/pass.hpp>

#include <memory>
#include <vector>

namespace shrink {

// Runs `experiment`; plugins are looked up in `registry` (already discovered). Checks every
// stage before any training, prints progress (to options.out), and throws shrink::Error on any
// failure after removing partial results (the checkpoint stays, for `resume`).
RunSummary run_experiment(const Experiment& experiment, PluginRegistry& registry,
                          const RunOptions& options);

// The passes for the experiment in `context` (its stages checked), in order.
std::vector<std::unique_ptr<Pass>> build_passes(const RunContext& context);

// Runs `passes` in order with `instruments` around them (context.instruments is set to them).
// StopRequested and errors propagate.
void run_passes(RunContext& context, const std::vector<std::unique_ptr<Pass>>& passes,
                Instruments& instruments);

}  // namespace shrink
