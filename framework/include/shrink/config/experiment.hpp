// A YAML experiment: which model, which data, which compression stages, how to train, what to
// export. Parsed and validated completely before anything runs.
//
//   model: mnist.pt                  # TorchScript file, relative to the YAML file
//   seed: 0
//   threads: 2                       # intra-op threads (0: LibTorch's default)
//   plugin_paths: [my_plugins/]      # searched first
//   data: {format: idx, path: /usr/share/datasets/fashion-mnist, batch_size: 64,
//          test_batch_size: 1000, normalize: {mean: [0.2860], std: [0.3530]}, resize: 0,
//          channels: 0, train_limit: 0, test_limit: 0}
//   pretrain: {epochs: 5, optimizer: {name: sgd, lr: 0.01, momentum: 0.9, weight_decay: 5e-4},
//              scheduler: {name: step, step_size: 2, gamma: 0.5}}   # or cosine {eta_min}
//   compress:
//     - plugin: l1_norm              # pruning: masks on a schedule, trained by the stage itself
//       config_list: [{op_types: [Conv2d], sparse_ratio: 0.5}]
//       schedule: {kind: agp, updates: 4}
//       train: {epochs: 2, optimizer: {...}}
//     - remove_channels: true        # the pruned channels removed for real
//     - plugin: qat
//       options: {}
//       config_list: [...]
//   finetune: {epochs: 5, optimizer: {...}}
//   evaluate: true
//   export: {dir: out, model: true}
//   distributed: {backend: gloo, timeout: 300, sync_bn: false}  # when launched on several ranks
#pragma once

#include <shrink/config/config_list.hpp>
#include <shrink/config/data_options.hpp>
#include <shrink/core/options.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace shrink {

struct OptimizerSpec {
  std::string name = "sgd";  // sgd, adam, adamw
  double lr = 0.01;
  double momentum = 0.0;
  double weight_decay = 0.0;
};

// Learning rate per epoch, computed from the epoch index (so a resumed run gets the same rate):
//   step:   lr * gamma^floor(epoch / step_size)
//   cosine: eta_min + (lr - eta_min) * (1 + cos(pi * epoch / epochs)) / 2
struct SchedulerSpec {
  std::string name = "none";  // none, step, cosine
  int64_t step_size = 1;
  double gamma = 0.1;
  double eta_min = 0.0;

  double lr_at(double base_lr, int64_t epoch, int64_t epochs) const;
};

struct TrainSpec {
  bool enabled = false;
  int64_t epochs = 0;  // whole epochs, or
  int64_t steps = 0;   // a number of optimizer steps (takes precedence when > 0)
  OptimizerSpec optimizer;
  SchedulerSpec scheduler;
};

// A calibration pass (post-training statistics): `batches` forwards in eval mode over training
// samples, `batch_size` each (0: the data's batch_size).
struct CalibrationSpec {
  int64_t batches = 0;  // 0: no calibration pass
  int64_t batch_size = 0;
  std::string where;  // file:line:column of the calibration key
};

// How a pruning stage's masks reach their sparsity: `updates` mask computations spread evenly
// over the stage's training (the first before any step), the sparsity rising as `kind` says
// (one_shot: once, at the target; linear; agp: Zhu and Gupta's cubic).
struct PruneScheduleSpec {
  std::string kind = "one_shot";
  int64_t updates = 1;
  std::string where;
};

struct StageSpec {
  std::string plugin;
  Options options;
  ConfigList config_list;
  CalibrationSpec calibration;
  // Simulated BatchNorm folding (Jacob et al.) for the Conv2d -> BatchNorm2d pairs of the graph:
  // the weight sites see the folded weight, and the export carries it.
  bool fold_bn = false;
  // Pruning stages (the plugin is a weight masker or pruner): the schedule, and the training the
  // stage runs itself (its masks rise during it), before later stages.
  PruneScheduleSpec schedule;
  TrainSpec train;
  // A stage of its own (`- remove_channels: true`, no plugin): the channels the pruning stages
  // before it zeroed are removed from the model for real.
  bool remove_channels = false;
  std::string where;  // file:line:column of the stage
};

// Bounds of size-like settings: past them a value is a typo (threads: 100000 would start as many
// threads and hang; resize: 100000 would ask for terabytes), refused with its file:line:column.
constexpr int kMaxThreads = 256;
constexpr int64_t kMaxImageSide = 4096;
constexpr int64_t kMaxChannels = 64;

// How the ranks of a distributed run work together (docs/distributed.md). Read whether or not the
// run is distributed, so that a typo is found on one process too.
struct DistributedSpec {
  std::string backend = "gloo";   // "gloo" (CPU); "nccl" needs a LibTorch built with CUDA
  int64_t timeout_seconds = 300;  // a rank silent this long (hung, or gone) ends the run
  bool sync_bn = false;           // BatchNorm statistics over the global batch, not each rank's
};

struct Experiment {
  std::string file;
  std::string model;  // resolved path
  int64_t seed = 0;
  int64_t threads = 0;
  std::vector<std::string> plugin_paths;  // resolved
  DataOptions data;
  int64_t batch_size = 64;
  int64_t test_batch_size = 1000;
  TrainSpec pretrain;
  std::vector<StageSpec> compress;
  TrainSpec finetune;
  bool evaluate = true;
  std::string export_dir;  // resolved; may be overridden by --out
  bool export_model = true;
  bool export_latency =
      true;                  // model_int8.pt's and model_pruned.pt's latency vs fp32 in the report
  bool export_int8 = false;  // also model_int8.pt, LibTorch's int8 kernels (needs export_model)
  // int8 only where it pays: each int8 region timed against float here, the faster kept, and no
  // model_int8.pt when it is slower than the best fp32 (export_int8's Int8Timing).
  bool export_int8_only_if_faster = true;
  DistributedSpec distributed;
  std::string resolved_yaml;  // the experiment after --set, as YAML

  // Reads and validates `path`, applying `overrides` ("key.path=value", value parsed as YAML)
  // first. Throws shrink::Error with "file:line:column: key: what is wrong (allowed: ...)".
  static Experiment load(const std::string& path, const std::vector<std::string>& overrides = {});
  // The same for YAML text, read as if it were the file `path` (relative paths resolve beside it).
  static Experiment parse(const std::string& text, const std::string& path,
                          const std::vector<std::string>& overrides = {});

 private:
  static Experiment from_yaml(YAML::Node root, const std::string& path,
                              const std::vector<std::string>& overrides);
};

}  // namespace shrink
