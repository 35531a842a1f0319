// The one context the passes of a run share (see pass.hpp): the experiment, the model as it is
// compressed, the data, the live plugin instances, the training progress and what the report
// will say. Passes read and write it; instruments (instrument.hpp) watch it.
#pragma once

#include <shrink/config/experiment.hpp>
#include <shrink/data/loader.hpp>
#include <shrink/dist/world.hpp>
#include <shrink/host/plugin_registry.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace torch::jit {
struct Module;
}  // namespace torch::jit

namespace shrink {

class Model;
class QuantizerInstance;
class QuantizedModel;
class PruningStage;
struct Checkpoint;
class Instruments;
class Communicator;

// Models to time in another process, whose oneDNN runs another instruction set (`isa`, as
// ONEDNN_MAX_CPU_ISA names it): oneDNN takes its instruction set once per process.
struct IsaBench {
  std::string isa;
  std::string fp32_model, int8_model;
  std::vector<int64_t> sample_shape;
  int64_t batch = 1;
  int rounds = 0;         // median_latency's
  double timeout_s = 60;  // then the child is stopped
};

struct RunOptions {
  std::string out_dir;            // overrides export.dir when non-empty
  bool print_plan = false;        // check everything, print the resolved pipeline, run nothing
  bool resume = false;            // continue from <out>/checkpoint.pt
  bool fresh = false;             // discard <out>/checkpoint.pt and start over
  int64_t stop_after_epochs = 0;  // stop (resumably) after this many epochs in all; 0: never
  std::ostream* out = nullptr;    // where progress and the plan go; nullptr: std::cout
  WorldPlace world;               // this process's rank among the run's (alone by default)
  // Times an IsaBench in a child process and gives its figures as `shrink bench --json` prints
  // them, or throws shrink::Error; the CLI starts itself. Unset: the latency pass compares no
  // other instruction set.
  std::function<nlohmann::json(const IsaBench&)> bench_with_isa;
};

struct RunSummary {
  double baseline_accuracy = -1;
  double compressed_accuracy = -1;
  double exported_accuracy = -1;  // exported_file reloaded and evaluated; -1 when not exported
  double int8_accuracy = -1;      // model_int8.pt reloaded and evaluated; -1 when not exported
  double pruned_accuracy = -1;    // model_pruned.pt beside model_qat.pt; -1 when not written
  double baseline_seconds_per_epoch = 0;
  double compressed_seconds_per_epoch = 0;
  std::string exported_file;  // model_qat.pt; model_fp32.pt without compress stages; "" if none
  bool stopped = false;       // stop_after_epochs or a signal; no results were written
  int interrupted = 0;        // the signal that stopped the run (SIGINT, SIGTERM), or 0
  std::string checkpoint;     // when stopped: what <out>/checkpoint.pt holds; "" when none
  std::string out_dir;
  std::vector<std::string> latency;  // one line per batch size: did it pay?
};

// Training progress of one phase ("pretrain", "finetune"), kept in checkpoints.
struct PhaseProgress {
  int64_t epochs_done = 0;
  int64_t steps_done = 0;
  double seconds = 0;  // training time (not evaluation), summed over epochs
  int64_t images = 0;

  nlohmann::json to_json() const;
  static PhaseProgress from_json(const nlohmann::json& j);
  // Seconds per epoch of `n` images, from what was measured.
  double seconds_per_epoch(int64_t n) const;
};

// A compress stage checked against the model without training (run/plan.hpp): its plugin, and
// the sites or ops it plans.
struct CheckedStage {
  const AlgorithmInfo* algorithm = nullptr;
  std::vector<PlannedSite> sites;          // a quantizer's, as planned
  std::vector<std::string> site_notes;     // sites merged or on one tensor (the plan says them)
  bool prunes = false;                     // a weight masker or pruner
  std::vector<PruneTarget> prune_targets;  // a pruner's
  bool removes_channels = false;           // `remove_channels: true`
  int quantizer = -1;                      // index in RunContext::quantizers, once created
};

struct RunContext {
  RunContext();
  ~RunContext();
  RunContext(const RunContext&) = delete;
  RunContext& operator=(const RunContext&) = delete;

  const Experiment* experiment = nullptr;
  const RunOptions* options = nullptr;
  std::string out_dir;  // where results go
  std::string staging;  // where they are written first (<out_dir>/.staging.<pid>)
  std::unique_ptr<Model> model;
  int64_t classes = 0;               // the model's outputs (plan check); 0: not known
  std::vector<CheckedStage> stages;  // one per experiment->compress entry
  DataSplit train;
  DataSplit test;
  std::vector<std::unique_ptr<QuantizerInstance>> quantizers;
  std::vector<std::unique_ptr<QuantizedModel>> wrapped;
  std::vector<std::unique_ptr<PruningStage>> pruners;  // their masks hold in every later step
  PhaseProgress pretrain;
  PhaseProgress finetune;
  // Set by the resume instrument for the training pass it resumes: the optimizer's state.
  const Checkpoint* resume_optimizer = nullptr;
  RunSummary summary;
  Instruments* instruments = nullptr;  // what passes report to; may be null (nothing reported)
  // The ranks of the run (dist/communicator.hpp): the lone one (world 1) until run_experiment
  // joins the run's. Never null.
  Communicator* comm = nullptr;

  // What the outputs say, filled in by the passes that produce it.
  nlohmann::json pruning = nlohmann::json::array();            // per pruning stage
  nlohmann::json calibration = nlohmann::json::array();        // per calibration pass
  nlohmann::json folded_batchnorms = nlohmann::json::array();  // per quantization stage
  nlohmann::json shared_points = nlohmann::json::array();      // sites on one tensor
  nlohmann::json channel_removal = nullptr;
  nlohmann::json sites = nlohmann::json::array();  // per exported site
  nlohmann::json int8 = nullptr;
  nlohmann::json pass_seconds = nlohmann::json::array();  // [{pass, seconds}] as they end
  nlohmann::json history = nlohmann::json::array();       // per training epoch, every phase
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> masks_before_removal;
  std::unique_ptr<Model> exported;  // model_qat.pt as a user loads it, once written
  // The pruned float model as the first quantization stage found it (sharing its parameters, so
  // that it has the later training), written as model_pruned.pt beside model_qat.pt.
  std::shared_ptr<torch::jit::Module> pruned_float;
  nlohmann::json latency = nullptr;

  // One line of progress, to the instruments (only instruments print).
  void say(const std::string& line) const;
  // Training mode of the model and of every quantizer.
  void set_training(bool on);
  // Training batches of one epoch on this rank (its share of the training set).
  int64_t batches_per_epoch() const;
  int rank() const;
  int world() const;
  PhaseProgress& progress(const std::string& phase);  // "pretrain" or "finetune"
};

}  // namespace shrink
