#include <shrink/core/error.hpp>
#include <shrink/dist/communicator.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/instruments.hpp>
#include <shrink/run/pass.hpp>

#include "run/checkpoint.hpp"
#include "run/run_state.hpp"

#include <algorithm>

namespace shrink {

namespace fs = std::filesystem;

ResumeFromCheckpoint::ResumeFromCheckpoint(const fs::path& file) : file_(file) {}

ResumeFromCheckpoint::~ResumeFromCheckpoint() = default;

void ResumeFromCheckpoint::before_run(RunContext& c) {
  try {
    load(c);
  } catch (const SameOnEveryRank&) {
    throw;
  } catch (const Error& e) {
    // Every rank reads the same checkpoint and finds the same fault: rank 0 says it.
    if (c.world() > 1) throw SameOnEveryRank(e.what());
    throw;
  }
}

void ResumeFromCheckpoint::load(RunContext& c) {
  SHRINK_CHECK(std::none_of(c.stages.begin(), c.stages.end(),
                            [](const CheckedStage& s) { return s.removes_channels; }),
               "--resume: an experiment with remove_channels cannot resume (the checkpoint holds "
               "the smaller model); run it again without --resume");
  SHRINK_CHECK(fs::exists(file_), file_.string() << ": no checkpoint to resume from (run without "
                                                    "--resume, or pass the --out of the "
                                                    "interrupted run)");
  checkpoint_ = std::make_unique<Checkpoint>(Checkpoint::load(file_));
  const std::string& file = checkpoint_->file;
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(checkpoint_->meta);
    phase_ = meta.at("phase").get<std::string>();
    c.pretrain = PhaseProgress::from_json(meta.at("pretrain"));
    c.finetune = PhaseProgress::from_json(meta.at("finetune"));
    c.summary.baseline_accuracy = meta.at("baseline_accuracy").get<double>();
    c.history = meta.value("history", nlohmann::json::array());
  } catch (const nlohmann::json::exception& e) {
    throw Error(file + ": not a Shrink checkpoint (" + e.what() + ")");
  }
  SHRINK_CHECK(meta.value("layout", 1) == kCheckpointLayout,
               file << ": was written by an older Shrink, which numbered quantization sites "
                       "otherwise; run without --resume (--fresh discards it)");
  const int world = meta.value("world", 1);
  SHRINK_CHECK(world == c.world(),
               file << ": was written by a run on " << world << " rank" << (world == 1 ? "" : "s")
                    << "; this one has " << c.world()
                    << ": resume on as many (the batches of an epoch are dealt to the ranks)");
  SHRINK_CHECK(meta.value("experiment", "") == c.experiment->resolved_yaml,
               file << ": was written by a different experiment (or other --set values); "
                       "resume with the same ones, or run without --resume");
  c.say("resuming after " + phase_ + " epoch " + std::to_string(c.progress(phase_).epochs_done) +
        " from " + file);
}

namespace {

// Plugins count epochs and steps through their hooks; replays them to where the checkpoint was
// taken (the tensors they keep are restored).
void replay_plugin_hooks(RunContext& c, const PhaseProgress& progress) {
  const int64_t per_epoch = c.batches_per_epoch();
  for (int64_t e = 0; e < progress.epochs_done; ++e) {
    for (auto& q : c.quantizers) q->update_epoch(static_cast<int>(e));
    const int64_t steps = std::min(per_epoch, progress.steps_done - e * per_epoch);
    for (int64_t s = 0; s < steps; ++s) {
      for (auto& q : c.quantizers) q->step();
    }
  }
}

}  // namespace

PassMode ResumeFromCheckpoint::before_pass(const Pass& pass, RunContext& c) {
  if (reached_) return PassMode::kRun;
  if (pass.phase() != phase_) return PassMode::kRestore;
  reached_ = true;
  restore_run_state(c, *checkpoint_);
  replay_plugin_hooks(c, c.progress(phase_));
  c.resume_optimizer = checkpoint_.get();
  return PassMode::kRun;
}

void ResumeFromCheckpoint::after_pass(const Pass& pass, RunContext& c, PassMode mode,
                                      double seconds) {
  (void)mode;
  (void)seconds;
  if (pass.phase() == phase_ && c.resume_optimizer == checkpoint_.get()) {
    c.resume_optimizer = nullptr;
  }
}

}  // namespace shrink
