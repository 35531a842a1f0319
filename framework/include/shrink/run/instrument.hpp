// Instruments: what runs around the passes of a run (pass.hpp) without being part of any.
// Progress output, timing, checkpoints, resume and stop-after-epochs are instruments; only
// instruments write to stdout. They see the run start and end, each pass before and after, each
// training batch and epoch, and each line a pass says.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace torch::optim {
class Optimizer;
}

namespace shrink {

class Pass;
struct RunContext;

// How the runner treats a pass: run it, or restore it (Pass::restore) because a resumed
// checkpoint already holds what it did.
enum class PassMode { kRun, kRestore };

struct BatchEnd {
  std::string phase;  // "pretrain", "finetune", "compress[0]"
  int64_t epoch = 0;  // 1-based
  int64_t epochs = 0;
  int64_t batch = 0;  // 1-based
  int64_t batches = 0;
  double mean_loss = 0;  // over the epoch's batches so far
};

struct EpochEnd {
  std::string phase;
  int64_t epoch = 0;  // 1-based
  int64_t epochs = 0;
  double loss = 0;      // mean over the epoch's samples
  double accuracy = 0;  // training accuracy over the epoch's samples
  double lr = 0;
  double seconds = 0;  // training time of the epoch
  int64_t images = 0;
  // A checkpoint here can be resumed from: pretrain and finetune epochs (a pruning stage's own
  // training is not).
  bool resumable = false;
  torch::optim::Optimizer* optimizer = nullptr;  // its state belongs in a checkpoint
};

// Thrown by an instrument to end the run early and resumably (stop-after-epochs, Ctrl-C); the run
// writes no results.
struct StopRequested {
  int signal = 0;  // the signal that asked for it (StopOnInterrupt), 0 for stop-after-epochs
};

class Instrument {
 public:
  virtual ~Instrument() = default;
  virtual void before_run(RunContext& context) { (void)context; }
  // The strictest answer of all instruments wins (kRestore over kRun).
  virtual PassMode before_pass(const Pass& pass, RunContext& context);
  virtual void after_pass(const Pass& pass, RunContext& context, PassMode mode, double seconds);
  virtual void after_run(RunContext& context) { (void)context; }  // the run succeeded
  virtual void on_batch(const BatchEnd& batch) { (void)batch; }
  virtual void on_epoch(const EpochEnd& epoch, RunContext& context);
  virtual void on_line(const std::string& line) { (void)line; }
};

// The instruments of one run, in the order they are called.
class Instruments {
 public:
  Instruments();
  ~Instruments();
  Instruments(Instruments&&) noexcept;
  Instruments& operator=(Instruments&&) noexcept;
  Instrument& add(std::unique_ptr<Instrument> instrument);

  void before_run(RunContext& context);
  PassMode before_pass(const Pass& pass, RunContext& context);
  void after_pass(const Pass& pass, RunContext& context, PassMode mode, double seconds);
  void after_run(RunContext& context);
  void on_batch(const BatchEnd& batch);
  void on_epoch(const EpochEnd& epoch, RunContext& context);
  void on_line(const std::string& line);

 private:
  std::vector<std::unique_ptr<Instrument>> list_;
};

}  // namespace shrink
