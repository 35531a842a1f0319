// What of a run a checkpoint holds, and putting it back (private to run/): the model's
// parameters and buffers, every pruning stage's masks, every quantizer's per-site state, the RNG,
// and the progress as JSON.
#pragma once

#include <shrink/run/context.hpp>

#include <filesystem>
#include <string>

namespace torch::optim {
class Optimizer;
}

namespace shrink {

// What a checkpoint's keys mean: 2 since two sites on one tensor merge, which renumbers the
// quantizers' sites (their state is kept by site number). A checkpoint of another layout would
// load one site's state into another: resuming it is refused.
constexpr int kCheckpointLayout = 2;

// <out>/checkpoint.pt after an epoch of `phase`, with the optimizer's state.
void save_run_checkpoint(RunContext& context, const std::string& phase,
                         torch::optim::Optimizer& optimizer);
// "pretrain epoch 3, written 2026-12-02 14:31" for the checkpoint at `file`: what a message about
// it says; "an unreadable checkpoint, written ..." when it cannot be read.
std::string describe_run_checkpoint(const std::filesystem::path& file);
// Copies the checkpoint's tensors into the run's (the shapes must match) and restores the RNG.
void restore_run_state(RunContext& context, const Checkpoint& checkpoint);

}  // namespace shrink
