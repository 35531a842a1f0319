// The training and evaluation loops the passes share (private to run/).
#pragma once

#include <shrink/run/context.hpp>

#include <ATen/core/Tensor.h>

#include <string>

namespace torch::jit {
struct Module;
}

namespace shrink {

// What a pass adds to the training loop (a pruning stage: its mask updates, its penalty, what it
// observes). Every default does nothing.
class TrainingHooks {
 public:
  virtual ~TrainingHooks() = default;
  virtual void before_epoch(int64_t epoch) { (void)epoch; }  // 0-based
  virtual void before_step(int64_t step) { (void)step; }     // steps done in the phase so far
  virtual at::Tensor penalty() { return {}; }                // added to the loss when defined
  virtual void after_backward() {}
  virtual void after_step(int64_t step) { (void)step; }  // the step's index
};

// Trains for spec.epochs (or spec.steps) from where `progress` says, reporting each batch and
// epoch to the instruments (`resumable`: the epochs can be checkpointed). Every pruning stage's
// masks hold: gradients are masked before the optimizer steps, weights after. The optimizer
// starts from context.resume_optimizer when it is set.
void train_epochs(RunContext& context, const TrainSpec& spec, const std::string& phase,
                  PhaseProgress& progress, bool resumable, TrainingHooks* hooks = nullptr);

// Epochs `spec` trains for, whole or begun.
int64_t epochs_of(const RunContext& context, const TrainSpec& spec);

// Top-1 accuracy of `module` on `data`. With `reference`, also the signal-to-noise ratio in dB of
// module's outputs against reference's (an int8 model against the fake-quant one it came from),
// into *sqnr_db (inf when they are equal).
double evaluate(RunContext& context, torch::jit::Module& module, const DataSplit& data,
                torch::jit::Module* reference = nullptr, double* sqnr_db = nullptr);

// The training samples' positions in a random order fixed by the seed (not the training RNG):
// calibration and measurement take their batches from it, with the evaluation transforms.
at::Tensor seeded_order(const RunContext& context);

int64_t calibration_batch_size(const RunContext& context, const CalibrationSpec& spec);

}  // namespace shrink
