// The passes of `shrink run` (pass.hpp), one file each under framework/src/run/passes/, in the
// order run/pipeline.cpp puts them.
#pragma once

#include <shrink/run/pass.hpp>

#include <cstddef>
#include <string>
#include <utility>

namespace shrink {

// Threads, seeds, the executor's mode; the training and test data, checked against what the
// calibration passes will need. Restored by running it (the data are needed either way).
class PrepareDataPass : public Pass {
 public:
  std::string name() const override { return "prepare"; }
  void run(RunContext& context) override;
  void restore(RunContext& context) override { run(context); }
};

// Trains the model (and every quantizer's learnable state) for the experiment's pretrain or
// finetune spec; masks of earlier pruning stages hold.
class TrainPass : public Pass {
 public:
  explicit TrainPass(std::string phase) : phase_(std::move(phase)) {}
  std::string name() const override { return phase_; }
  std::string phase() const override { return phase_; }
  void run(RunContext& context) override;

 private:
  std::string phase_;  // "pretrain" or "finetune"
};

// Top-1 accuracy on the test data: of the float model ("baseline", RunSummary::
// baseline_accuracy) or of the compressed one ("compressed").
class EvaluatePass : public Pass {
 public:
  explicit EvaluatePass(std::string which) : which_(std::move(which)) {}
  std::string name() const override { return "evaluate-" + which_; }
  void run(RunContext& context) override;

 private:
  std::string which_;
};

// Compress stage `stage` with a quantizer: the plugin instance, the model's graph wrapped at
// every planned site (BatchNorms folded when the stage asks).
class QuantizeStagePass : public Pass {
 public:
  explicit QuantizeStagePass(std::size_t stage) : stage_(stage) {}
  std::string name() const override;
  void run(RunContext& context) override;
  void restore(RunContext& context) override { run(context); }

 private:
  std::size_t stage_;
};

// Compress stage `stage` with a weight masker or pruner: its masks on its schedule, over its own
// training (or at once without one); the pruning table for the report.
class PruneStagePass : public Pass {
 public:
  explicit PruneStagePass(std::size_t stage) : stage_(stage) {}
  std::string name() const override;
  void run(RunContext& context) override;
  void restore(RunContext& context) override;  // the masks come from the checkpoint

 private:
  std::size_t stage_;
};

// Compress stage `stage`, `remove_channels`: the channels the pruning stages zeroed go for real;
// the outputs must not change (checked).
class RemoveChannelsPass : public Pass {
 public:
  explicit RemoveChannelsPass(std::size_t stage) : stage_(stage) {}
  std::string name() const override;
  void run(RunContext& context) override;

 private:
  std::size_t stage_;
};

// Stage `stage`'s calibration: its quantizer records statistics over the asked batches, then
// turns them into quantization parameters.
class CalibratePass : public Pass {
 public:
  explicit CalibratePass(std::size_t stage) : stage_(stage) {}
  std::string name() const override;
  void run(RunContext& context) override;

 private:
  std::size_t stage_;
};

// Per-site quantization SQNR against the float model, on the calibration samples.
class MeasurePass : public Pass {
 public:
  std::string name() const override { return "measure"; }
  void run(RunContext& context) override;
  bool rank_zero_only() const override { return true; }
};

// calibration.json (NNI's calibration_config) and every site's entry for the report.
class ExportCalibrationPass : public Pass {
 public:
  std::string name() const override { return "export-calibration"; }
  void run(RunContext& context) override;
  bool rank_zero_only() const override { return true; }
};

// masks.pt: every pruning stage's masks in the shapes of the model before channel removal.
class ExportMasksPass : public Pass {
 public:
  std::string name() const override { return "export-masks"; }
  void run(RunContext& context) override;
  bool rank_zero_only() const override { return true; }
};

// The compressed model as plain TorchScript (model_qat.pt, model_pruned.pt or model_fp32.pt),
// reloaded as a user would and scored.
class ExportModelPass : public Pass {
 public:
  std::string name() const override { return "export-model"; }
  void run(RunContext& context) override;
  bool rank_zero_only() const override { return true; }
};

// model_int8.pt: model_qat.pt lowered to LibTorch's int8 kernels, scored against it.
class ExportInt8Pass : public Pass {
 public:
  std::string name() const override { return "export-int8"; }
  void run(RunContext& context) override;
  bool rank_zero_only() const override { return true; }
};

// The latency of model_int8.pt and model_pruned.pt against the fp32 model as loaded and frozen +
// optimize_for_inference (the faster of the two), at batch 1 and the training batch, one thread.
class MeasureLatencyPass : public Pass {
 public:
  std::string name() const override { return "latency"; }
  void run(RunContext& context) override;
  bool rank_zero_only() const override { return true; }
};

// report.json: metrics, timings, calibration, pruning, int8, sites, the resolved experiment.
class WriteReportPass : public Pass {
 public:
  std::string name() const override { return "report"; }
  void run(RunContext& context) override;
  bool rank_zero_only() const override { return true; }
};

// Moves the staged results into the output folder (only now: a failed run leaves nothing that
// looks valid) and removes results an earlier run left there that this one did not write.
class PublishPass : public Pass {
 public:
  std::string name() const override { return "publish"; }
  void run(RunContext& context) override;
  bool rank_zero_only() const override { return true; }
};

}  // namespace shrink
