// A pass: one named step of a run over the shared RunContext (prepare the data, pretrain, one
// compress stage, calibrate, export, ...). run/pipeline.hpp builds the list from the experiment;
// the runner calls each pass in order, with the instruments (instrument.hpp) around it. A pass
// does its work and reports through RunContext::say; it never prints, times or checkpoints.
#pragma once

#include <string>

namespace shrink {

struct RunContext;

class Pass {
 public:
  virtual ~Pass() = default;

  // "prepare", "pretrain", "compress[1]", "calibrate[1]", "export-model", ...
  virtual std::string name() const = 0;
  virtual void run(RunContext& context) = 0;
  // Instead of run() when a resumed checkpoint already holds the pass's effect: rebuild only
  // what that state is restored into (a quantization stage wraps the model again, a pruning
  // stage makes its masks' holder). Default: nothing.
  virtual void restore(RunContext& context) { (void)context; }
  // The training phase the pass runs, named as checkpoints name it ("pretrain", "finetune");
  // "" for a pass that is no resumable training.
  virtual std::string phase() const { return ""; }
  // A pass that only writes or reports results (exports, the report): in a distributed run rank 0
  // runs it alone, with collectives off, and the other ranks end before it (such passes come
  // last: build_passes checks it).
  virtual bool rank_zero_only() const { return false; }
};

}  // namespace shrink
