// The built-in instruments (instrument.hpp) that `shrink run` puts around its passes.
#pragma once

#include <shrink/run/instrument.hpp>

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <string>

namespace shrink {

class Communicator;

struct Checkpoint;

// Progress as a person reads it: each line a pass says, one line per training epoch, and on a
// terminal a bar that moves with the batches.
class ProgressPrinter : public Instrument {
 public:
  ProgressPrinter(std::ostream& out, bool terminal);
  void on_batch(const BatchEnd& batch) override;
  void on_epoch(const EpochEnd& epoch, RunContext& context) override;
  void on_line(const std::string& line) override;

 private:
  std::ostream& out_;
  bool terminal_;
};

// "pretrain epoch 2/5: loss 0.4321, accuracy 0.8456, lr 0.01, 5718 images/s, 1.1 s".
std::string epoch_line(const EpochEnd& epoch);

// The run's log and per-epoch history, kept with its results: every epoch goes into
// RunContext::history (which checkpoints carry, so that a resumed run's history is whole), every
// line said, every epoch and the latency lines into run.log, written into the staging folder as the
// results are published.
class RunLog : public Instrument {
 public:
  PassMode before_pass(const Pass& pass, RunContext& context) override;
  void on_epoch(const EpochEnd& epoch, RunContext& context) override;
  void on_line(const std::string& line) override;

 private:
  std::string text_;
};

// Each pass's wall time: in RunContext::pass_seconds (the report) and in the debug log.
class PassTimer : public Instrument {
 public:
  void after_pass(const Pass& pass, RunContext& context, PassMode mode, double seconds) override;
};

// After every resumable epoch, <out>/checkpoint.pt: the model, every plugin's state, the masks,
// the optimizer and the RNG. Removed when the run succeeds.
class CheckpointWriter : public Instrument {
 public:
  void on_epoch(const EpochEnd& epoch, RunContext& context) override;
  void after_run(RunContext& context) override;
};

// Ends the run (StopRequested with the signal) at the first batch, epoch or pass boundary after a
// Ctrl-C or SIGTERM (core/interrupt.hpp): the step under way finishes, the checkpoint of the latest
// whole epoch stays (an epoch's last step finishes the epoch first: this goes after the
// CheckpointWriter), no results are written.
class StopOnInterrupt : public Instrument {
 public:
  // `ranks`: in a distributed run they agree (a signal on any rank stops all at the same batch).
  explicit StopOnInterrupt(Communicator* ranks = nullptr) : ranks_(ranks) {}
  PassMode before_pass(const Pass& pass, RunContext& context) override;
  void on_batch(const BatchEnd& batch) override;
  void on_epoch(const EpochEnd& epoch, RunContext& context) override;

 private:
  int signal() const;
  Communicator* ranks_;
};

// Ends the run (StopRequested) once this many resumable epochs are done in all; goes after the
// CheckpointWriter, so that the run can be resumed there.
class StopAfterEpochs : public Instrument {
 public:
  explicit StopAfterEpochs(int64_t epochs) : epochs_(epochs) {}
  void on_epoch(const EpochEnd& epoch, RunContext& context) override;

 private:
  int64_t epochs_;
};

// Continues an interrupted run from its checkpoint: the passes before the training phase the
// checkpoint was taken in are restored rather than run (Pass::restore); before that phase's pass,
// the tensors, the RNG and the plugins' epoch and step counts are brought to the checkpoint, and
// the pass continues with the optimizer's saved state. Throws shrink::Error, naming the file,
// when there is no checkpoint or another experiment wrote it.
class ResumeFromCheckpoint : public Instrument {
 public:
  explicit ResumeFromCheckpoint(const std::filesystem::path& file);
  ~ResumeFromCheckpoint() override;
  void before_run(RunContext& context) override;
  PassMode before_pass(const Pass& pass, RunContext& context) override;
  void after_pass(const Pass& pass, RunContext& context, PassMode mode, double seconds) override;

 private:
  void load(RunContext& context);  // the checkpoint read and checked against the run
  std::filesystem::path file_;
  std::unique_ptr<Checkpoint> checkpoint_;  // opened when the run starts
  std::string phase_;                       // the phase the checkpoint was taken in
  bool reached_ = false;                    // the pass of that phase has started
};

}  // namespace shrink
