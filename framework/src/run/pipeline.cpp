#include <shrink/core/error.hpp>
#include <shrink/core/files.hpp>
#include <shrink/core/interrupt.hpp>
#include <shrink/core/one_line_error.hpp>
#include <shrink/dist/communicator.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/run/instruments.hpp>
#include <shrink/run/passes.hpp>
#include <shrink/run/pipeline.hpp>
#include <shrink/run/plan.hpp>

#include "run/run_state.hpp"

#include <ATen/ATen.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <tuple>

namespace shrink {

namespace fs = std::filesystem;

std::vector<std::unique_ptr<Pass>> build_passes(const RunContext& c) {
  const Experiment& x = *c.experiment;
  std::vector<std::unique_ptr<Pass>> passes;
  passes.push_back(std::make_unique<PrepareDataPass>());
  if (x.pretrain.enabled) passes.push_back(std::make_unique<TrainPass>("pretrain"));
  if (x.evaluate) passes.push_back(std::make_unique<EvaluatePass>("baseline"));
  bool quantizes = false, prunes = false;
  for (std::size_t i = 0; i < c.stages.size(); ++i) {
    if (c.stages[i].removes_channels) {
      passes.push_back(std::make_unique<RemoveChannelsPass>(i));
    } else if (c.stages[i].prunes) {
      passes.push_back(std::make_unique<PruneStagePass>(i));
      prunes = true;
    } else {
      passes.push_back(std::make_unique<QuantizeStagePass>(i));
      quantizes = true;
    }
  }
  for (std::size_t i = 0; i < c.stages.size(); ++i) {
    if (x.compress[i].calibration.batches > 0) passes.push_back(std::make_unique<CalibratePass>(i));
  }
  if (x.finetune.enabled) passes.push_back(std::make_unique<TrainPass>("finetune"));
  if (x.evaluate) passes.push_back(std::make_unique<EvaluatePass>("compressed"));
  // From here on rank 0 works alone (Pass::rank_zero_only): no pass after needs the others.
  if (quantizes) passes.push_back(std::make_unique<MeasurePass>());
  if (quantizes) passes.push_back(std::make_unique<ExportCalibrationPass>());
  if (prunes) passes.push_back(std::make_unique<ExportMasksPass>());
  if (x.export_model) passes.push_back(std::make_unique<ExportModelPass>());
  if (x.export_int8) passes.push_back(std::make_unique<ExportInt8Pass>());
  if (x.export_latency && x.export_model && (x.export_int8 || writes_pruned_model(c.stages))) {
    passes.push_back(std::make_unique<MeasureLatencyPass>());
  }
  passes.push_back(std::make_unique<WriteReportPass>());
  passes.push_back(std::make_unique<PublishPass>());
  const auto alone =
      std::find_if(passes.begin(), passes.end(), [](const auto& p) { return p->rank_zero_only(); });
  SHRINK_CHECK(std::all_of(alone, passes.end(), [](const auto& p) { return p->rank_zero_only(); }),
               "internal: a pass of every rank after rank 0's own");
  return passes;
}

void run_passes(RunContext& c, const std::vector<std::unique_ptr<Pass>>& passes,
                Instruments& instruments) {
  c.instruments = &instruments;
  instruments.before_run(c);
  for (const auto& pass : passes) {
    // Results are rank 0's to write and report: the other ranks skip those passes.
    if (pass->rank_zero_only() && c.rank() != 0) continue;
    std::optional<Communicator::Local> alone;
    if (pass->rank_zero_only()) alone.emplace(*c.comm);
    const PassMode mode = instruments.before_pass(*pass, c);
    const auto start = std::chrono::steady_clock::now();
    if (mode == PassMode::kRun) {
      pass->run(c);
    } else {
      pass->restore(c);
    }
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    instruments.after_pass(*pass, c, mode, took.count());
  }
  instruments.after_run(c);
}

namespace {

std::string output_folder(const Experiment& experiment, const RunOptions& options) {
  fs::path out = fs::path(options.out_dir.empty() ? experiment.export_dir : options.out_dir)
                     .lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "out/" names the folder "out"
  return out.string();
}

// Rank 0 prints and writes checkpoints; every rank resumes and stops at the same point.
Instruments default_instruments(const RunContext& c, std::ostream& out) {
  const bool writer = c.rank() == 0;
  Instruments instruments;
  if (writer) {
    instruments.add(std::make_unique<ProgressPrinter>(out, &out == &std::cout && isatty(1) != 0));
  }
  instruments.add(std::make_unique<PassTimer>());
  instruments.add(std::make_unique<RunLog>());  // before the checkpoint writer: the history
  if (c.options->resume) {
    instruments.add(std::make_unique<ResumeFromCheckpoint>(fs::path(c.out_dir) / "checkpoint.pt"));
  }
  if (writer) instruments.add(std::make_unique<CheckpointWriter>());
  if (c.options->stop_after_epochs > 0) {
    instruments.add(std::make_unique<StopAfterEpochs>(c.options->stop_after_epochs));
  }
  instruments.add(std::make_unique<StopOnInterrupt>(c.comm));
  return instruments;
}

// A checkpoint in the output folder is an interrupted run's work: a new run over it must be told
// what to do with it (--resume or --fresh), not replace it after its first epoch.
void check_earlier_checkpoint(const RunContext& c) {
  const fs::path checkpoint = fs::path(c.out_dir) / "checkpoint.pt";
  std::error_code ec;
  if (c.options->resume || !fs::exists(checkpoint, ec)) return;
  SHRINK_CHECK(c.options->fresh, c.out_dir << " holds a checkpoint ("
                                           << describe_run_checkpoint(checkpoint)
                                           << "): pass --resume to continue it or --fresh to "
                                              "discard it");
  fs::remove(checkpoint, ec);
}

// What runs that were killed left: staging folders and temporary files (".checkpoint.pt.<pid>.tmp",
// core/files.hpp). This run holds the folder's lock, so no other run is writing them.
void remove_leftovers(const std::string& out_dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(out_dir, ec)) {
    const std::string name = entry.path().filename().string();
    const bool temporary =
        name.size() > 5 && name[0] == '.' && name.compare(name.size() - 4, 4, ".tmp") == 0;
    if (name.rfind(".staging.", 0) == 0 || temporary) fs::remove_all(entry, ec);
  }
}

// A run that ends without results removes what it staged, and the output folder itself when it
// made it and nothing but its lock is there (no checkpoint yet): a refused run leaves no trace.
void abandon(const RunContext& c, bool created_folder) {
  std::error_code ec;
  fs::remove_all(c.staging, ec);
  if (!created_folder) return;
  for (const auto& entry : fs::directory_iterator(c.out_dir, ec)) {
    if (entry.path().filename() != ".shrink.lock") return;
  }
  fs::remove_all(c.out_dir, ec);
}

void finish_stopped(RunContext& c, int signal) {
  c.summary.stopped = true;
  c.summary.interrupted = signal;
  const fs::path checkpoint = fs::path(c.out_dir) / "checkpoint.pt";
  std::error_code ec;
  if (fs::exists(checkpoint, ec)) c.summary.checkpoint = describe_run_checkpoint(checkpoint);
}

// This process's place among the run's ranks: alone, or joined to the others (after every check
// that needs no one else, so that bad input is said before anyone waits).
std::unique_ptr<Communicator> join_ranks(const Experiment& x, const RunOptions& options) {
  DistOptions d;
  d.backend = x.distributed.backend;
  d.timeout = std::chrono::seconds(x.distributed.timeout_seconds);
  return Communicator::join(options.world, d);
}

// The host API's collectives (plugins) reach this run's ranks while it lasts.
struct CurrentCommunicator {
  explicit CurrentCommunicator(Communicator& c) { set_current_communicator(&c); }
  ~CurrentCommunicator() { set_current_communicator(nullptr); }
  CurrentCommunicator(const CurrentCommunicator&) = delete;
  CurrentCommunicator& operator=(const CurrentCommunicator&) = delete;
};

// Runs `setup` on rank 0; if it fails (a locked folder, a checkpoint to resume or discard), the
// other ranks end with it, silently (rank 0 says why), rather than wait for it in the first
// collective.
template <typename Setup>
void rank_zero_ready(Communicator& ranks, Setup&& setup) {
  at::Tensor failed = at::zeros({1}, at::kDouble);
  std::exception_ptr error;
  if (ranks.rank() == 0) {
    try {
      setup();
    } catch (...) {
      error = std::current_exception();
      failed.fill_(1.0);
    }
  }
  ranks.all_reduce(failed, ReduceOp::kMax, "starting the run");
  if (error) std::rethrow_exception(error);
  if (failed.item<double>() > 0) throw SameOnEveryRank("rank 0 could not start the run");
}

}  // namespace

RunSummary run_experiment(const Experiment& experiment, PluginRegistry& registry,
                          const RunOptions& options) {
  std::ostream& out = options.out != nullptr ? *options.out : std::cout;
  RunContext c;
  c.experiment = &experiment;
  c.options = &options;
  c.out_dir = output_folder(experiment, options);
  // Everything that can be checked without running is checked first.
  const std::string unwritable = unwritable_folder(c.out_dir);
  SHRINK_CHECK(unwritable.empty(), "output folder " << c.out_dir << ": " << unwritable);
  c.model = std::make_unique<Model>(Model::load(experiment.model));
  std::tie(c.train, c.test) = open_data(experiment, registry, options.world.local_world);
  c.classes = check_model_on_data(experiment, *c.model, c.train.shape());
  c.train.check_labels(c.classes);
  c.test.check_labels(c.classes);
  c.stages = check_stages(experiment, *c.model, registry);
  if (options.world.distributed()) Communicator::check_backend(experiment.distributed.backend);
  // Ctrl-C while the plan was checked: nothing has been touched yet, nothing will be. (The ranks
  // of a distributed run, which may not all have seen it yet, agree at the first pass.)
  if (const int signal = options.world.distributed() ? 0 : interrupt_signal()) {
    finish_stopped(c, signal);
    c.summary.out_dir = c.out_dir;
    return c.summary;
  }
  if (options.print_plan) {
    if (options.world.rank == 0) print_plan(experiment, *c.model, c.stages, out);
    return c.summary;
  }
  std::unique_ptr<Communicator> ranks = join_ranks(experiment, options);
  c.comm = ranks.get();
  CurrentCommunicator current(*ranks);
  // Ranks that run different experiments would pair unrelated collectives (other batch sizes,
  // other sites): they are refused at once.
  const auto hash = std::hash<std::string>{}(experiment.resolved_yaml + "\n" + c.out_dir);
  ranks->check_same(at::tensor({static_cast<double>(hash >> 12)}, at::kDouble),
                    {"the experiment (its YAML after --set, and --out)"}, "starting the run",
                    "every rank must be started with the same command line");
  bool created = false;
  std::optional<FolderLock> lock;
  // Rank 0 alone writes: it holds the folder's lock and stages the results.
  rank_zero_ready(*ranks, [&] {
    created = !fs::exists(c.out_dir);
    try {
      lock.emplace(c.out_dir);
      check_earlier_checkpoint(c);
      remove_leftovers(c.out_dir);
    } catch (...) {
      abandon(c, created);
      throw;
    }
  });
  c.staging = (fs::path(c.out_dir) / (".staging." + std::to_string(getpid()))).string();
  Instruments instruments = default_instruments(c, out);
  const auto passes = build_passes(c);
  try {
    run_passes(c, passes, instruments);
  } catch (const StopRequested& stop) {
    if (c.rank() == 0) abandon(c, created);
    finish_stopped(c, stop.signal);
  } catch (const std::exception& e) {
    if (c.rank() == 0) abandon(c, created);
    ranks->abandon(error_line(e));
    throw;
  }
  c.summary.out_dir = c.out_dir;
  return c.summary;
}

}  // namespace shrink
