#include <shrink/graph/channel_removal.hpp>
#include <shrink/core/error.hpp>
#include <shrink/export/int8_export.hpp>
#include <shrink/core/logging.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/run/pipeline.hpp>
#include <shrink/prune/pruning_stage.hpp>
#include <shrink/graph/quantized_model.hpp>
#include <shrink/core/version.hpp>
#include <shrink/data/dataset.hpp>

#include "run/checkpoint.hpp"
#include "graph/graph_utils.hpp"

#include <nlohmann/json.hpp>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace shrink {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Thrown when RunOptions::stop_after_epochs is reached, after the checkpoint is written.
struct StopRequested {};

// One BLAS thread: OpenBLAS's own pool and LibTorch's OpenMP pool otherwise fight over the cores
// (measured here: 2x slower training). Called before any BLAS work.
void use_one_blas_thread() {
  using SetThreads = void (*)(int);
  if (auto* set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(1);
  }
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerSpec& spec,
                                                        const std::vector<at::Tensor>& params) {
  if (spec.name == "adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(spec.lr).weight_decay(spec.weight_decay));
  }
  if (spec.name == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(spec.lr).weight_decay(spec.weight_decay));
  }
  return std::make_unique<torch::optim::SGD>(
      params, torch::optim::SGDOptions(spec.lr).momentum(spec.momentum).weight_decay(spec.weight_decay));
}

// A compress stage checked against the model without training: its plugin, its options, and every
// site it plans (the plugin's setup_site sees each one, on a throwaway copy of the model).
struct CheckedStage {
  const AlgorithmInfo* algorithm = nullptr;
  std::vector<PlannedSite> sites;          // a quantizer's
  bool prunes = false;                     // a weight masker or pruner
  std::vector<PruneTarget> prune_targets;  // a pruner's
  bool removes_channels = false;           // `remove_channels: true`
  int quantizer = -1;                      // index in Context::quantizers, once created
};

const char* const kPruningKeys[] = {"sparse_ratio", "sparsity", "sparsity_per_layer", "total_sparsity",
                                    "max_sparsity_per_layer"};

// A pruner that ranks by what it observes in training (taylor): its masks come at the end of
// each stretch of training, not the start.
bool learns_in_training(const AlgorithmInfo& a) {
  return a.is_pruner() && SHRINK_HAS_FIELD(a.descriptor, shrink_algorithm_descriptor, pruner) &&
         a.descriptor->pruner != nullptr && a.descriptor->pruner->one_shot == 0;
}

// A pruning stage checked without training: its config_list against the model, its schedule,
// its training, every op type against the plugin (on a throwaway copy of the model).
void check_pruning_stage(const StageSpec& stage, const std::string& where, const Model& model,
                         Model& probe_model, bool quantizer_before, CheckedStage& checked) {
  SHRINK_CHECK(stage.calibration.batches == 0,
               stage.calibration.where << ": calibration: '" << stage.plugin
                                       << "' prunes; calibration is for post-training quantizers");
  SHRINK_CHECK(!stage.fold_bn, where << ".fold_bn: '" << stage.plugin << "' prunes; fold_bn is for quantizers");
  SHRINK_CHECK(stage.schedule.kind == "one_shot" || stage.train.enabled,
               stage.schedule.where << ": " << where << ".schedule: a " << stage.schedule.kind
                                    << " schedule spreads its updates over the stage's training; "
                                       "add train: {epochs: N} (or steps)");
  SHRINK_CHECK(!learns_in_training(*checked.algorithm) || stage.train.enabled,
               where << ": '" << stage.plugin << "' ranks by what it observes in training; add "
                                                 "train: {epochs: N} (or steps) to the stage");
  checked.prunes = true;
  checked.prune_targets = plan_pruning(stage.config_list, model.ops());
  PruningStage probe(*checked.algorithm, stage.options, checked.prune_targets, probe_model.module(), where);
  // Its outputs are tapped by rewriting the model's graph, which a quantization stage before it
  // has already rewritten (and keeps pointers into).
  SHRINK_CHECK(!(quantizer_before && stage.train.enabled && probe.observes_outputs()),
               where << ": '" << stage.plugin << "' observes the pruned ops' outputs in training, which "
                                                 "cannot come after a quantization stage; prune first");
}

std::string stage_name(std::size_t i) { return "compress[" + std::to_string(i) + "]"; }

std::vector<CheckedStage> check_stages(const Experiment& x, const Model& model,
                                       PluginRegistry& registry) {
  std::vector<CheckedStage> out;
  Model probe_model = Model::load(x.model);
  std::vector<std::unique_ptr<QuantizerInstance>> probes;
  std::vector<std::unique_ptr<QuantizedModel>> wrapped;
  for (std::size_t i = 0; i < x.compress.size(); ++i) {
    const StageSpec& stage = x.compress[i];
    const std::string where = stage.where + ": " + stage_name(i);
    CheckedStage checked;
    auto any_before = [&](bool CheckedStage::*flag) {
      return std::any_of(out.begin(), out.end(), [&](const CheckedStage& s) { return s.*flag; });
    };
    const bool quantizer_before =
        std::any_of(out.begin(), out.end(), [](const CheckedStage& s) { return s.algorithm && !s.prunes; });
    if (stage.remove_channels) {
      SHRINK_CHECK(any_before(&CheckedStage::prunes),
                   where << ".remove_channels: no pruning stage before it (nothing to remove)");
      SHRINK_CHECK(!quantizer_before, where << ".remove_channels: put it before the quantization stages "
                                               "(their sites are set up for the model's shapes)");
      SHRINK_CHECK(!any_before(&CheckedStage::removes_channels), where << ".remove_channels: only once per experiment");
      checked.removes_channels = true;
      out.push_back(std::move(checked));
      continue;
    }
    try {
      checked.algorithm = &registry.require(stage.plugin);
    } catch (const Error& e) {
      throw Error(where + ".plugin: " + e.what());
    }
    if (checked.algorithm->is_masker() && !checked.algorithm->is_quantizer()) {
      SHRINK_CHECK(!any_before(&CheckedStage::removes_channels),
                   where << ": pruning after remove_channels is not supported; prune before it");
      try {
        check_pruning_stage(stage, where, model, probe_model, quantizer_before, checked);
      } catch (const Error& e) {
        const std::string what = e.what();
        // Messages that already name the stage keep their own prefix.
        throw Error(what.find(stage_name(i)) != std::string::npos ? what : where + ": " + what);
      }
      out.push_back(std::move(checked));
      continue;
    }
    SHRINK_CHECK(checked.algorithm->is_quantizer(),
                 where << ".plugin: '" << stage.plugin << "' is a " << checked.algorithm->kinds_text()
                       << ", neither a quantizer nor a weight masker");
    SHRINK_CHECK(stage.schedule.where.empty() && !stage.train.enabled,
                 where << ": schedule and train are for pruning stages; '" << stage.plugin
                       << "' quantizes (it trains in finetune)");
    for (const ConfigEntry& e : stage.config_list.entries) {
      for (const char* key : kPruningKeys) {
        SHRINK_CHECK(!e.settings.find(key), e.where << ": config_list[" << e.index << "]: " << key
                                                    << " is a pruning key; '" << stage.plugin
                                                    << "' quantizes");
      }
    }
    SHRINK_CHECK(!x.export_model || (checked.algorithm->capabilities & SHRINK_CAP_EXPORT),
                 where << ".plugin: '" << stage.plugin
                       << "' does not export calibration, so model_qat.pt cannot be written "
                          "(set export.model: false)");
    const bool calibrates = (checked.algorithm->capabilities & SHRINK_CAP_CALIBRATION) != 0;
    const bool trains = (checked.algorithm->capabilities & SHRINK_CAP_TRAINING) != 0;
    SHRINK_CHECK(stage.calibration.batches == 0 || calibrates,
                 stage.calibration.where << ": " << stage_name(i) << ".calibration: plugin '"
                                         << stage.plugin << "' does not calibrate (capabilities: "
                                         << checked.algorithm->capabilities_text() << ")");
    SHRINK_CHECK(stage.calibration.batches > 0 || trains,
                 where << ": plugin '" << stage.plugin
                       << "' is post-training only and needs a calibration pass "
                          "(add calibration: {batches: N})");
    checked.sites = plan_sites(stage.config_list, model.ops());
    if (x.export_int8) {
      for (const PlannedSite& s : checked.sites) {
        const std::string bits = s.config.find("quant_bits") ? *s.config.find("quant_bits") : "8";
        SHRINK_CHECK(bits == "8", where << ": " << s.op_name << "." << s.target << " is a " << bits
                                        << "-bit site; export.int8 needs 8-bit sites (LibTorch's "
                                           "int8 kernels), or set export.int8: false");
      }
    }
    try {
      probes.push_back(std::make_unique<QuantizerInstance>(*checked.algorithm, stage.options));
      wrapped.push_back(
          std::make_unique<QuantizedModel>(probe_model, *probes.back(), checked.sites, stage.fold_bn));
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    out.push_back(std::move(checked));
  }
  return out;
}

json yaml_to_json(const YAML::Node& node) {
  if (node.IsMap()) {
    json out = json::object();
    for (const auto& kv : node) out[kv.first.as<std::string>()] = yaml_to_json(kv.second);
    return out;
  }
  if (node.IsSequence()) {
    json out = json::array();
    for (const auto& item : node) out.push_back(yaml_to_json(item));
    return out;
  }
  if (!node.IsScalar() || node.Tag() == "~") return nullptr;
  const std::string text = node.Scalar();
  if (node.Tag() == "!") return text;  // quoted: a string as written
  int64_t i = 0;
  double d = 0;
  bool b = false;
  if (YAML::convert<int64_t>::decode(node, i)) return i;
  if (YAML::convert<double>::decode(node, d)) return d;
  if (YAML::convert<bool>::decode(node, b)) return b;
  return text;
}

json tensor_json(const at::Tensor& t) {
  if (!t.defined()) return nullptr;
  at::Tensor d = t.to(torch::kDouble).contiguous().reshape({-1});
  if (t.numel() == 1) return d.item<double>();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

void write_json(const fs::path& file, const json& value) {
  std::ofstream out(file);
  out << value.dump(2) << "\n";
  out.close();
  SHRINK_CHECK(out.good(), file.string() << ": cannot be written");
}

// Training progress of one phase, kept in checkpoints.
struct PhaseProgress {
  int64_t epochs_done = 0;
  int64_t steps_done = 0;
  double seconds = 0;  // training time (not evaluation), summed over epochs
  int64_t images = 0;

  json to_json() const {
    return {{"epochs_done", epochs_done}, {"steps_done", steps_done}, {"seconds", seconds},
            {"images", images}};
  }
  static PhaseProgress from_json(const json& j) {
    PhaseProgress p;
    p.epochs_done = j.at("epochs_done").get<int64_t>();
    p.steps_done = j.at("steps_done").get<int64_t>();
    p.seconds = j.at("seconds").get<double>();
    p.images = j.at("images").get<int64_t>();
    return p;
  }
  // Seconds per epoch of `n` images, from what was measured.
  double seconds_per_epoch(int64_t n) const {
    return images ? seconds * static_cast<double>(n) / static_cast<double>(images) : 0.0;
  }
};

// The context the passes share.
struct Context {
  const Experiment* x = nullptr;
  const RunOptions* options = nullptr;
  std::string out_dir;
  std::string staging;
  std::unique_ptr<Model> model;
  std::vector<CheckedStage> stages;
  Dataset train;
  Dataset test;
  std::vector<std::unique_ptr<QuantizerInstance>> quantizers;
  std::vector<std::unique_ptr<QuantizedModel>> wrapped;
  std::vector<std::unique_ptr<PruningStage>> pruners;  // their masks hold in every later step
  json pruning = json::array();                        // per pruning stage, for the report
  RunSummary summary;
  PhaseProgress pretrain;
  PhaseProgress finetune;
  std::unique_ptr<Checkpoint> resume;  // the checkpoint being resumed from, until it is used
  std::string resume_phase;            // "pretrain" or "finetune"
  json calibration = json::array();    // one entry per calibration pass, for the report
  json folded_batchnorms = json::array();  // per stage: "conv + bn" of each pair folded (fold_bn)
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> masks_before_removal;
  json channel_removal = nullptr;  // what remove_channels did, for the report
};

int64_t batches_per_epoch(const Context& c) {
  return (c.train.size() + c.x->batch_size - 1) / c.x->batch_size;
}

int64_t epochs_of(const Context& c, const TrainSpec& spec) {
  const int64_t per_epoch = batches_per_epoch(c);
  return spec.steps > 0 ? (spec.steps + per_epoch - 1) / per_epoch : spec.epochs;
}

void set_training(Context& c, bool on) {
  c.model->module().train(on);
  for (auto& q : c.quantizers) q->set_training(on);
}

// Top-1 accuracy of `module` on `data`. With `reference`, also the signal-to-noise ratio in dB of
// module's outputs against reference's (an int8 model against the fake-quant one it came from),
// into *sqnr_db (inf when they are equal).
double evaluate(Context& c, torch::jit::Module& module, const Dataset& data,
                torch::jit::Module* reference = nullptr, double* sqnr_db = nullptr) {
  torch::NoGradGuard no_grad;
  set_training(c, false);
  module.eval();
  if (reference != nullptr) reference->eval();
  int64_t correct = 0;
  double signal = 0, noise = 0;
  for (int64_t start = 0; start < data.size(); start += c.x->test_batch_size) {
    const int64_t n = std::min(c.x->test_batch_size, data.size() - start);
    const at::Tensor x = data.inputs.narrow(0, start, n);
    at::Tensor out = module.forward({x}).toTensor();
    correct += out.argmax(1).eq(data.targets.narrow(0, start, n)).sum().item<int64_t>();
    if (reference != nullptr) {
      const at::Tensor ref = reference->forward({x}).toTensor().to(at::kDouble);
      signal += ref.pow(2).sum().item<double>();
      noise += (ref - out.to(at::kDouble)).pow(2).sum().item<double>();
    }
  }
  if (sqnr_db != nullptr) {
    *sqnr_db = noise > 0 ? 10.0 * std::log10(signal / noise) : std::numeric_limits<double>::infinity();
  }
  return data.size() ? static_cast<double>(correct) / static_cast<double>(data.size()) : 0.0;
}

json checkpoint_meta(const Context& c, const std::string& phase) {
  return {{"shrink_version", version()},
          {"experiment", c.x->resolved_yaml},
          {"phase", phase},
          {"pretrain", c.pretrain.to_json()},
          {"finetune", c.finetune.to_json()},
          {"baseline_accuracy", c.summary.baseline_accuracy}};
}

// Every tensor a checkpoint holds, by key: the model's parameters and buffers, then each
// quantizer's per-site state.
template <typename F>
void for_each_checkpointed(Context& c, F f) {
  for (const auto& p : c.model->module().named_parameters(true)) f("model/" + p.name, p.value);
  for (const auto& b : c.model->module().named_buffers(true)) f("model/" + b.name, b.value);
  for (std::size_t i = 0; i < c.pruners.size(); ++i) {
    for (const MaskedOp& op : c.pruners[i]->ops()) {
      f("mask/" + std::to_string(i) + "/" + op.target.op_name + "/weight_mask", op.weight_mask);
      if (op.bias_mask.defined()) f("mask/" + std::to_string(i) + "/" + op.target.op_name + "/bias_mask", op.bias_mask);
    }
    for (const auto& fo : c.pruners[i]->followers()) f("mask/" + std::to_string(i) + "/" + fo.op_name + "/mask", fo.mask);
  }
  for (std::size_t i = 0; i < c.quantizers.size(); ++i) {
    QuantizerInstance& q = *c.quantizers[i];
    for (int site = 0; site < q.site_count(); ++site) {
      for (const auto& s : q.site_state(site)) {
        f("quant/" + std::to_string(i) + "/" + std::to_string(site) + "/" + s.name, s.value);
      }
    }
  }
}

void save_checkpoint(Context& c, const std::string& phase, torch::optim::Optimizer& optimizer) {
  Checkpoint k;
  k.meta = checkpoint_meta(c, phase).dump();
  for_each_checkpointed(c, [&](const std::string& key, const at::Tensor& t) { k.tensors[key] = t; });
  k.tensors["rng"] = default_generator_state();
  fs::create_directories(c.out_dir);
  k.save(fs::path(c.out_dir) / "checkpoint.pt", &optimizer);
}

// Restores the model (and, in the finetune phase, the quantizers) from the resumed checkpoint.
void restore_state(Context& c) {
  const Checkpoint& k = *c.resume;
  torch::NoGradGuard no_grad;
  for_each_checkpointed(c, [&](const std::string& key, const at::Tensor& into) {
    auto it = k.tensors.find(key);
    SHRINK_CHECK(it != k.tensors.end() && it->second.sizes() == into.sizes(),
                 k.file << ": does not match the model (" << key << ")");
    into.copy_(it->second);
  });
  set_default_generator_state(k.tensors.at("rng"));
}

// A pruning stage training itself: its mask updates spread over the stage's steps, its plugin's
// hooks and L1 penalty.
struct PruningRun {
  PruningStage* stage = nullptr;
  Schedule kind = Schedule::kOneShot;
  int64_t updates = 1;
  bool at_end = false;  // updates close each stretch of training (learns_in_training)
  int64_t total_steps = 0;
  int64_t done = 0;     // updates made
  std::function<void(int64_t)> on_update;  // after update u (1-based)
};

// Mask update u (1-based) falls before step floor((u - 1) T / U) (the first before any training),
// or, at_end, after step ceil(u T / U) - 1 (the last after the last step).
void pruning_step(PruningRun& run, int64_t step, bool after) {
  while (run.done < run.updates) {
    const int64_t u = run.done + 1;
    const int64_t due = run.at_end ? (u * run.total_steps + run.updates - 1) / run.updates - 1
                                   : (u - 1) * run.total_steps / run.updates;
    if (due != step || after != run.at_end) return;
    run.stage->update(run.kind, u, run.updates);
    run.done = u;
    if (run.on_update) run.on_update(u);
  }
}

// Trains for spec.epochs (or spec.steps), from where `progress` says, checkpointing after every
// epoch (not in a pruning stage's own training). `resumed`, when given, holds the optimizer's
// state at that point. Every pruning stage's masks hold: gradients are masked before the
// optimizer steps, weights after.
void train(Context& c, const TrainSpec& spec, const std::string& phase, PhaseProgress& progress,
           const Checkpoint* resumed, PruningRun* pruning = nullptr) {
  std::vector<at::Tensor> params;
  for (const auto& p : c.model->module().parameters()) params.push_back(p);
  for (auto& q : c.quantizers) {
    for (const auto& p : q->parameters()) params.push_back(p);
  }
  auto optimizer = make_optimizer(spec.optimizer, params);
  if (resumed != nullptr) resumed->load_optimizer(*optimizer);
  const int64_t n = c.train.size();
  SHRINK_CHECK(n > 0, "the training set is empty");
  const int64_t per_epoch = batches_per_epoch(c);
  const int64_t epochs = epochs_of(c, spec);
  const bool tty = isatty(STDOUT_FILENO) != 0;
  for (int64_t epoch = progress.epochs_done; epoch < epochs; ++epoch) {
    const double lr = spec.scheduler.lr_at(spec.optimizer.lr, epoch, epochs);
    for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
    for (auto& q : c.quantizers) q->update_epoch(static_cast<int>(epoch));
    if (pruning) pruning->stage->update_epoch(static_cast<int>(epoch));
    set_training(c, true);
    at::Tensor order = torch::randperm(n, torch::kLong);
    const auto start = Clock::now();
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t b = 0; b < per_epoch; ++b) {
      if (spec.steps > 0 && progress.steps_done >= spec.steps) break;
      at::Tensor index = order.narrow(0, b * c.x->batch_size,
                                      std::min(c.x->batch_size, n - b * c.x->batch_size));
      at::Tensor x = c.train.inputs.index_select(0, index);
      at::Tensor y = c.train.targets.index_select(0, index);
      if (pruning) pruning_step(*pruning, progress.steps_done, false);
      optimizer->zero_grad();
      at::Tensor out = c.model->module().forward({x}).toTensor();
      at::Tensor loss = torch::cross_entropy_loss(out, y);
      const double loss_value = loss.item<double>();
      SHRINK_CHECK(std::isfinite(loss_value),
                   phase << " epoch " << epoch + 1 << ", batch " << b + 1
                         << ": the loss is not finite; lower the learning rate");
      if (pruning) {
        at::Tensor penalty = pruning->stage->penalty();
        if (penalty.defined()) loss = loss + penalty;
      }
      loss.backward();
      if (pruning) pruning->stage->observe();
      for (auto& p : c.pruners) p->mask_gradients();
      optimizer->step();
      for (auto& p : c.pruners) p->apply_masks();
      for (auto& q : c.quantizers) q->step();
      if (pruning) {
        pruning->stage->step();
        pruning_step(*pruning, progress.steps_done, true);
      }
      ++progress.steps_done;
      loss_sum += loss_value * static_cast<double>(x.size(0));
      correct += out.argmax(1).eq(y).sum().item<int64_t>();
      seen += x.size(0);
      if (tty && (b % 10 == 0 || b + 1 == per_epoch)) {
        const int64_t width = 30, filled = width * (b + 1) / per_epoch;
        std::cout << "\r" << phase << " epoch " << epoch + 1 << "/" << epochs << " ["
                  << std::string(static_cast<std::size_t>(filled), '#')
                  << std::string(static_cast<std::size_t>(width - filled), '.') << "] loss "
                  << std::fixed << std::setprecision(4) << loss_sum / static_cast<double>(seen)
                  << std::flush;
      }
    }
    const double seconds = seconds_since(start);
    progress.seconds += seconds;
    progress.images += seen;
    progress.epochs_done = epoch + 1;
    if (tty) std::cout << "\r\033[K";
    const double denominator = static_cast<double>(std::max<int64_t>(seen, 1));
    std::cout << phase << " epoch " << epoch + 1 << "/" << epochs << ": loss " << std::fixed
              << std::setprecision(4) << loss_sum / denominator << ", accuracy "
              << static_cast<double>(correct) / denominator << ", lr " << std::setprecision(6)
              << std::defaultfloat << lr << ", " << std::fixed << std::setprecision(0)
              << static_cast<double>(seen) / seconds << " images/s, " << std::setprecision(1)
              << seconds << " s" << std::defaultfloat << std::endl;
    if (pruning) continue;  // a pruning stage's training is not resumable on its own
    save_checkpoint(c, phase, *optimizer);
    const int64_t total = c.pretrain.epochs_done + c.finetune.epochs_done;
    if (c.options->stop_after_epochs > 0 && total >= c.options->stop_after_epochs) {
      throw StopRequested{};
    }
  }
  set_training(c, false);
}

// Sparsity of each pruned op's weight mask now, and how many of its output channels are gone
// (every weight of the channel masked).
json pruning_table(const PruningStage& stage) {
  json ops = json::array();
  int64_t zeros = 0, total = 0;
  for (const MaskedOp& op : stage.ops()) {
    const at::Tensor m = op.weight_mask;
    const int64_t n = m.numel(), kept = m.ne(0).sum().item<int64_t>();
    const int64_t channels = m.dim() > 0 ? m.size(0) : 1;
    const int64_t gone = m.dim() > 0 ? m.reshape({channels, -1}).ne(0).any(1).logical_not().sum().item<int64_t>() : 0;
    zeros += n - kept;
    total += n;
    ops.push_back({{"op", op.target.op_name},
                   {"type", op.target.op_type},
                   {"target_sparsity", op.target.sparsity},
                   {"global", op.target.global},
                   {"weight_sparsity", static_cast<double>(n - kept) / static_cast<double>(n)},
                   {"channels", channels},
                   {"channels_pruned", gone}});
  }
  json followers = json::array();
  for (const auto& f : stage.followers()) {
    followers.push_back({{"op", f.op_name}, {"follows", stage.ops()[f.leader].target.op_name}});
  }
  return {{"ops", ops},
          {"batchnorms_following", followers},
          {"weight_sparsity", total ? static_cast<double>(zeros) / static_cast<double>(total) : 0.0}};
}

// Pruning stage `i`: its masks, on its schedule, over its own training (or at once without one).
void prune(Context& c, std::size_t i, bool resumed) {
  const StageSpec& stage = c.x->compress[i];
  const std::string name = stage_name(i);
  c.pruners.push_back(std::make_unique<PruningStage>(*c.stages[i].algorithm, stage.options,
                                                     c.stages[i].prune_targets, c.model->module(), name));
  PruningStage& pruner = *c.pruners.back();
  std::cout << name << ": " << stage.plugin << " on " << pruner.ops().size() << " ops, "
            << stage.schedule.kind << " schedule over " << stage.schedule.updates << " mask update"
            << (stage.schedule.updates == 1 ? "" : "s") << std::endl;
  if (resumed) {  // the checkpoint holds the masks and the pruned weights; the table comes at export
    c.pruning.push_back({{"stage", i}, {"plugin", stage.plugin}, {"ops", nullptr},
                         {"schedule", {{"kind", stage.schedule.kind}, {"updates", stage.schedule.updates}}}});
    return;
  }
  auto report_update = [&](int64_t u) {
    const json t = pruning_table(pruner);
    std::cout << name << " masks " << u << "/" << stage.schedule.updates << ": weight sparsity "
              << std::fixed << std::setprecision(3) << t["weight_sparsity"].get<double>() << " (";
    for (std::size_t k = 0; k < t["ops"].size(); ++k) {
      const json& op = t["ops"][k];
      std::cout << (k ? ", " : "") << op["op"].get<std::string>() << " "
                << op["weight_sparsity"].get<double>();
    }
    std::cout << ")" << std::defaultfloat << std::endl;
  };
  PruningRun run;
  run.stage = &pruner;
  run.kind = schedule_from_name(stage.schedule.kind, stage.schedule.where);
  run.updates = stage.schedule.updates;
  run.at_end = learns_in_training(*c.stages[i].algorithm);
  run.on_update = report_update;
  if (stage.train.enabled) {
    const int64_t per_epoch = batches_per_epoch(c);
    run.total_steps = stage.train.steps > 0 ? stage.train.steps : stage.train.epochs * per_epoch;
    PhaseProgress progress;
    if (pruner.observes_outputs()) pruner.tap_outputs(c.model->module());
    train(c, stage.train, name, progress, nullptr, &run);
    pruner.untap_outputs(c.model->module());
  }
  while (run.done < run.updates) {  // no training, or it ended early
    pruner.update(run.kind, run.done + 1, run.updates);
    report_update(++run.done);
  }
  json entry = pruning_table(pruner);
  entry["stage"] = i;
  entry["plugin"] = stage.plugin;
  entry["schedule"] = {{"kind", stage.schedule.kind}, {"updates", stage.schedule.updates}};
  if (c.x->evaluate) {
    const double accuracy = evaluate(c, c.model->module(), c.test);
    entry["accuracy"] = accuracy;
    std::cout << name << " accuracy " << std::setprecision(4) << accuracy << std::endl;
  }
  c.pruning.push_back(entry);
}

// masks.pt: {op: {weight_mask, bias_mask}} of every pruning stage (a later stage's mask of the
// same op multiplied in; BatchNorms that follow a pruned convolution included), in the shapes of
// the model before any channel removal, readable by torch.load.
using MaskSet = std::map<std::string, std::pair<at::Tensor, at::Tensor>>;

MaskSet merged_masks(const Context& c) {
  MaskSet merged;
  for (const auto& p : c.pruners) {
    for (const MaskedOp& op : p->ops()) {
      auto& m = merged[op.target.op_name];
      m.first = m.first.defined() ? m.first * op.weight_mask : op.weight_mask.clone();
      if (op.bias_mask.defined()) m.second = m.second.defined() ? m.second * op.bias_mask : op.bias_mask.clone();
    }
    for (const PruningStage::Follower& f : p->followers()) {
      auto& m = merged[f.op_name];
      m.first = m.first.defined() ? m.first * f.mask : f.mask.clone();
      m.second = m.second.defined() ? m.second * f.mask : f.mask.clone();
    }
  }
  return merged;
}

void save_masks(const Context& c, const fs::path& file) {
  const MaskSet merged = c.masks_before_removal.empty() ? merged_masks(c) : c.masks_before_removal;
  c10::impl::GenericDict all(c10::StringType::get(), c10::AnyType::get());
  for (const auto& kv : merged) {
    c10::impl::GenericDict masks(c10::StringType::get(), c10::TensorType::get());
    masks.insert("weight_mask", kv.second.first);
    if (kv.second.second.defined()) masks.insert("bias_mask", kv.second.second);
    all.insert(kv.first, masks);
  }
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(all));
  std::ofstream out(file, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  SHRINK_CHECK(out.good(), file.string() << ": cannot be written");
}

// Multiply-accumulates per sample of every convolution and linear on input `x` (their output
// elements times the weights each one reads).
int64_t count_macs(torch::jit::Module& module, const at::Tensor& x) {
  auto graph = module.get_method("forward").graph()->copy();
  detail::inline_calls(*graph);
  std::vector<torch::jit::Value*> outputs;
  for (torch::jit::Node* n : graph->nodes()) {
    if (n->kind() == c10::Symbol::fromQualString("aten::conv2d") ||
        n->kind() == c10::Symbol::fromQualString("aten::linear")) {
      outputs.push_back(n->output());
      outputs.push_back(n->input(1));
    }
  }
  outputs.push_back(graph->outputs().at(0));
  torch::jit::Node* tuple = graph->createTuple(outputs);
  graph->appendNode(tuple);
  graph->eraseOutput(0);
  graph->registerOutput(tuple->output());
  torch::jit::GraphFunction fn("count_macs", graph, nullptr);
  torch::jit::Stack stack{module._ivalue(), x};
  fn.run(stack);
  const auto items = stack.back().toTupleRef().elements();
  int64_t macs = 0;
  for (std::size_t k = 0; k + 1 < items.size(); k += 2) {
    const at::Tensor out = items[k].toTensor(), w = items[k + 1].toTensor();
    macs += out.numel() / x.size(0) * (w.numel() / w.size(0));
  }
  return macs;
}

// Median milliseconds of a forward on `x` for each module, run in turns.
std::vector<double> median_latency(std::vector<torch::jit::Module*> modules, const at::Tensor& x, int runs) {
  std::vector<std::vector<double>> times(modules.size());
  for (auto* m : modules) m->forward({x});
  for (int r = 0; r < runs; ++r) {
    for (std::size_t k = 0; k < modules.size(); ++k) {
      const auto start = Clock::now();
      modules[k]->forward({x});
      times[k].push_back(seconds_since(start) * 1000.0);
    }
  }
  std::vector<double> medians;
  for (auto& t : times) {
    std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

// Stage `i`, remove_channels: the channels the pruning stages zeroed go for real. The model's
// outputs on test samples must not change (checked); the report gets parameters, MACs and
// latency before and after.
void remove_channels(Context& c, std::size_t i) {
  torch::NoGradGuard no_grad;
  const std::string name = stage_name(i);
  set_training(c, false);
  torch::jit::Module& module = c.model->module();
  const at::Tensor x = c.test.inputs.narrow(0, 0, std::min<int64_t>(64, c.test.size()));
  const at::Tensor before = module.forward({x}).toTensor();
  torch::jit::Module masked = module.clone();
  const int64_t macs_before = count_macs(module, x);
  c.masks_before_removal = merged_masks(c);
  const ChannelRemoval removal = remove_pruned_channels(module);
  const at::Tensor after = module.forward({x}).toTensor();
  const double scale = before.abs().max().item<double>();
  const double diff = (after - before).abs().max().item<double>() / std::max(scale, 1e-30);
  SHRINK_CHECK(after.sizes() == before.sizes() && diff <= 1e-4,
               name << ": remove_channels changed the model's outputs (max difference " << diff
                    << " of their largest value); the pruned model is kept as it was");
  for (auto& p : c.pruners) p->rebind(module, removal);
  const int64_t macs_after = count_macs(module, x);
  const auto latency = median_latency({&masked, &module}, x, 30);
  json modules = json::array();
  std::ostringstream list;
  for (const ResizedModule& r : removal.modules) {
    modules.push_back({{"op", r.name}, {"type", r.type}, {"out_before", r.out_before}, {"out_after", r.out_after},
                       {"in_before", r.in_before}, {"in_after", r.in_after}});
    list << (list.tellp() > 0 ? ", " : "") << r.name << " ";
    if (r.out_after != r.out_before) {
      list << r.out_before << "->" << r.out_after;
    } else {
      list << "in " << r.in_before << "->" << r.in_after;
    }
  }
  c.channel_removal = {{"stage", static_cast<int64_t>(i)},
                       {"modules", modules},
                       {"channels_removed", removal.channels_removed},
                       {"parameters_before", removal.parameters_before},
                       {"parameters_after", removal.parameters_after},
                       {"macs_before", macs_before},
                       {"macs_after", macs_after},
                       {"latency_batch", x.size(0)},
                       {"latency_ms_before", latency[0]},
                       {"latency_ms_after", latency[1]},
                       {"max_output_difference", diff}};
  std::cout << name << ": removed " << removal.channels_removed << " channels (" << list.str() << "); parameters "
            << removal.parameters_before << " -> " << removal.parameters_after << ", MACs per sample "
            << macs_before << " -> " << macs_after << ", batch " << x.size(0) << " " << std::fixed
            << std::setprecision(3) << latency[0] << " -> " << latency[1] << " ms; outputs as before (max difference "
            << std::scientific << std::setprecision(1) << diff << ")" << std::defaultfloat << std::endl;
}

// The training samples in a random order fixed by the seed, drawn from a generator of its own so
// that the training RNG is untouched: calibration and measurement take their batches from it.
at::Tensor seeded_order(const Context& c) {
  at::Generator generator = at::detail::createCPUGenerator(static_cast<uint64_t>(c.x->seed));
  return at::randperm(c.train.size(), generator, at::TensorOptions(at::kLong));
}

int64_t calibration_batch_size(const Context& c, const CalibrationSpec& spec) {
  return spec.batch_size > 0 ? spec.batch_size : c.x->batch_size;
}

// Stage `i`'s calibration pass: its quantizer records statistics over the asked batches of
// training samples (a random choice fixed by the seed, without touching the training RNG), with
// the model in eval mode and earlier stages quantizing as they would in inference; then each site
// turns them into quantization parameters.
void calibrate(Context& c, std::size_t i) {
  const CalibrationSpec& spec = c.x->compress[i].calibration;
  const int64_t batch = calibration_batch_size(c, spec);
  const auto start = Clock::now();
  torch::NoGradGuard no_grad;
  set_training(c, false);
  QuantizerInstance& q = *c.quantizers[static_cast<std::size_t>(c.stages[i].quantizer)];
  const at::Tensor order = seeded_order(c);
  q.set_calibrating(true);
  try {
    for (int64_t b = 0; b < spec.batches; ++b) {
      // The data are finite (the loader checks); a site that sees NaN or inf says so itself.
      c.model->module().forward({c.train.inputs.index_select(0, order.narrow(0, b * batch, batch))});
    }
  } catch (...) {
    q.set_calibrating(false);
    throw;
  }
  q.set_calibrating(false);
  q.end_calibration();
  const double seconds = seconds_since(start);
  c.calibration.push_back({{"stage", static_cast<int64_t>(i)},
                           {"batches", spec.batches},
                           {"samples", spec.batches * batch},
                           {"seconds", seconds}});
  std::cout << "calibrate: " << c.x->compress[i].plugin << " on " << spec.batches * batch
            << " samples (" << spec.batches << " batches), " << std::fixed << std::setprecision(2)
            << seconds << " s" << std::defaultfloat << std::endl;
}

// Per-site quantization SQNR, measured on the calibration samples (the first stage's that
// calibrates; else 4 training batches), with the model in eval mode: each batch runs once in
// float (every site passes its input through) and once quantized, and each site's output is
// compared with the float model's value at the same point and with its own input.
void measure_sites(Context& c) {
  int64_t batches = 4, batch = c.x->batch_size;
  for (const StageSpec& stage : c.x->compress) {
    if (stage.calibration.batches > 0) {
      batches = stage.calibration.batches;
      batch = calibration_batch_size(c, stage.calibration);
      break;
    }
  }
  batches = std::min(batches, c.train.size() / std::max<int64_t>(batch, 1));
  torch::NoGradGuard no_grad;
  set_training(c, false);
  const at::Tensor order = seeded_order(c);
  using Measure = QuantizerInstance::Measure;
  auto set = [&](Measure mode) {
    for (auto& q : c.quantizers) q->set_measuring(mode);
  };
  try {
    for (int64_t b = 0; b < batches; ++b) {
      const at::Tensor x = c.train.inputs.index_select(0, order.narrow(0, b * batch, batch));
      set(Measure::kReference);
      c.model->module().forward({x});
      set(Measure::kCompare);
      c.model->module().forward({x});
    }
  } catch (...) {
    set(Measure::kOff);
    throw;
  }
  set(Measure::kOff);
}

// Replaces every shrink::quantize call with ATen fake-quantize ops carrying the exported
// calibration, so that plain LibTorch and Python load the model without Shrink.
void bake_fake_quant(Model& model) {
  auto graph = model.module().get_method("forward").graph();
  static const c10::Symbol kQuantize = c10::Symbol::fromQualString("shrink::quantize");
  std::vector<torch::jit::Node*> calls;
  // Sub-blocks too: a site may sit in a branch (mobilenet_v2's `if self.use_res_connect`).
  for (torch::jit::Node* node : detail::all_nodes(graph->block())) {
    if (node->kind() == kQuantize) calls.push_back(node);
  }
  for (torch::jit::Node* node : calls) {
    QuantizerInstance* q =
        QuantizerInstance::from_id(torch::jit::constant_as<int64_t>(node->input(1)).value());
    const int site = static_cast<int>(torch::jit::constant_as<int64_t>(node->input(2)).value());
    SHRINK_CHECK(q != nullptr, "export: a quantize call refers to a quantizer that is gone");
    const Calibration cal = q->export_site(site);
    const SiteSpec& spec = q->site_spec(site);
    torch::jit::Value* out = node->input(0);
    if (!cal.scale.defined() || !(cal.scale.min().item<double>() > 0)) {
      // A site that never saw data (e.g. an input never reached in training) has no range.
      logging::warn("export: " + spec.module_name + "." + spec.target +
               " has no calibrated scale; it is left in float in model_qat.pt");
    } else {
      torch::jit::WithInsertPoint guard(node);
      if (cal.scale.numel() == 1) {
        out = graph->insert(
            c10::Symbol::fromQualString("aten::fake_quantize_per_tensor_affine"),
            {node->input(0), cal.scale.item<double>(),
             static_cast<int64_t>(std::llround(cal.zero_point.item<double>())), cal.quant_min,
             cal.quant_max});
      } else {
        const int64_t axis = spec.quant_type == QuantType::kWeight ? 0 : 1;
        out = graph->insert(
            c10::Symbol::fromQualString("aten::fake_quantize_per_channel_affine"),
            {node->input(0), graph->insertConstant(cal.scale.to(torch::kFloat).reshape({-1})),
             graph->insertConstant(cal.zero_point.round().to(torch::kInt).reshape({-1})), axis,
             cal.quant_min, cal.quant_max});
      }
    }
    node->output()->replaceAllUsesWith(out);
    node->destroy();
  }
}

void print_plan(const Experiment& x, const Model& model, const std::vector<CheckedStage>& stages,
                   std::ostream& os) {
  os << "experiment " << x.file << "\n";
  os << "  model     " << x.model << " (" << model.ops().size() << " ops)\n";
  os << "  data      " << x.data.format << " " << x.data.path << ", batch " << x.batch_size
     << (x.data.train_limit ? ", first " + std::to_string(x.data.train_limit) + " training samples" : "")
     << (x.data.test_limit ? ", first " + std::to_string(x.data.test_limit) + " test samples" : "")
     << "\n";
  auto train_line = [&](const char* name, const TrainSpec& t) {
    os << "  " << std::left << std::setw(10) << name;
    if (!t.enabled) {
      os << "none\n";
      return;
    }
    os << (t.steps ? std::to_string(t.steps) + " steps" : std::to_string(t.epochs) + " epochs")
       << ", " << t.optimizer.name << " lr " << t.optimizer.lr << " momentum "
       << t.optimizer.momentum << " weight_decay " << t.optimizer.weight_decay;
    if (t.scheduler.name != "none") os << ", " << t.scheduler.name << " schedule";
    os << "\n";
  };
  train_line("pretrain", x.pretrain);
  for (std::size_t i = 0; i < stages.size(); ++i) {
    if (stages[i].removes_channels) {
      os << "  compress  [" << i << "] remove_channels: the pruned channels removed from the model\n";
      continue;
    }
    if (stages[i].prunes) {
      const StageSpec& st = x.compress[i];
      os << "  compress  [" << i << "] " << st.plugin << " (" << stages[i].algorithm->plugin->file
         << "): prunes " << stages[i].prune_targets.size() << " ops, " << st.schedule.kind << " schedule, "
         << st.schedule.updates << " mask update" << (st.schedule.updates == 1 ? "" : "s") << "\n";
      if (st.train.enabled) train_line("  train", st.train);
      for (const auto& t : stages[i].prune_targets) {
        os << "              " << t.op_name << " (" << t.op_type << ") "
           << (t.global ? "total_sparsity " : "sparse_ratio ") << t.sparsity;
        if (t.max_sparsity < 1.0) os << ", at most " << t.max_sparsity;
        os << "\n";
      }
      continue;
    }
    os << "  compress  [" << i << "] " << x.compress[i].plugin << " ("
       << stages[i].algorithm->plugin->file << "): " << stages[i].sites.size() << " sites\n";
    if (x.compress[i].calibration.batches > 0) {
      const CalibrationSpec& cal = x.compress[i].calibration;
      os << "              calibration: " << cal.batches << " batches of "
         << (cal.batch_size > 0 ? cal.batch_size : x.batch_size) << " training samples\n";
    }
    for (const auto& s : stages[i].sites) {
      os << "              " << s.op_name << "." << s.target << " " << *s.config.find("quant_dtype")
         << " " << *s.config.find("quant_scheme") << " " << *s.config.find("granularity") << "\n";
    }
  }
  train_line("finetune", x.finetune);
  os << "  evaluate  " << (x.evaluate ? "top-1 accuracy" : "no") << "\n";
  os << "  export    " << x.export_dir << " (calibration.json, report.json"
     << (std::any_of(stages.begin(), stages.end(), [](const CheckedStage& s) { return s.prunes; }) ? ", masks.pt" : "");
  bool quantizes = false, prunes = false;
  for (const CheckedStage& s : stages) (s.prunes ? prunes : quantizes) = true;
  os << (x.export_model ? (quantizes ? ", model_qat.pt" : prunes ? ", model_pruned.pt" : ", model_fp32.pt") : "")
     << ")\n";
}

// Opens the checkpoint to resume from and checks that it belongs to this experiment.
void open_resume(Context& c) {
  const fs::path file = fs::path(c.out_dir) / "checkpoint.pt";
  SHRINK_CHECK(fs::exists(file), file.string() << ": no checkpoint to resume from (run without "
                                                  "--resume, or pass the --out of the interrupted run)");
  c.resume = std::make_unique<Checkpoint>(Checkpoint::load(file));
  json meta;
  try {
    meta = json::parse(c.resume->meta);
    c.resume_phase = meta.at("phase").get<std::string>();
    c.pretrain = PhaseProgress::from_json(meta.at("pretrain"));
    c.finetune = PhaseProgress::from_json(meta.at("finetune"));
    c.summary.baseline_accuracy = meta.at("baseline_accuracy").get<double>();
  } catch (const json::exception& e) {
    throw Error(file.string() + ": not a Shrink checkpoint (" + e.what() + ")");
  }
  SHRINK_CHECK(meta.value("experiment", "") == c.x->resolved_yaml,
               file.string() << ": was written by a different experiment (or other --set values); "
                                "resume with the same ones, or run without --resume");
  std::cout << "resuming after " << c.resume_phase << " epoch "
            << (c.resume_phase == "pretrain" ? c.pretrain : c.finetune).epochs_done << " from "
            << file.string() << std::endl;
}

}  // namespace

RunSummary run_experiment(const Experiment& experiment, PluginRegistry& registry,
                          const RunOptions& options) {
  Context c;
  c.x = &experiment;
  c.options = &options;
  fs::path out = fs::path(options.out_dir.empty() ? experiment.export_dir : options.out_dir)
                     .lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "out/" names the folder "out"
  c.out_dir = out.string();
  c.staging = c.out_dir + ".partial";

  // Everything that can be checked without running is checked first.
  c.model = std::make_unique<Model>(Model::load(experiment.model));
  c.stages = check_stages(experiment, *c.model, registry);
  if (options.print_plan) {
    print_plan(experiment, *c.model, c.stages, std::cout);
    return c.summary;
  }
  if (options.resume) {
    SHRINK_CHECK(std::none_of(c.stages.begin(), c.stages.end(), [](const CheckedStage& s) { return s.removes_channels; }),
                 "--resume: an experiment with remove_channels cannot resume (the checkpoint holds the "
                 "smaller model); run it again without --resume");
    open_resume(c);
  }

  struct Pass {
    const char* name;
    std::function<void()> run;
  };
  const bool resume_in_finetune = c.resume && c.resume_phase == "finetune";
  const std::vector<Pass> passes = {
      {"prepare",
       [&] {
         if (experiment.threads > 0) at::set_num_threads(static_cast<int>(experiment.threads));
         use_one_blas_thread();
         // The profiling executor re-specialises the graph for training and made a step 2-3x
         // slower than Python eager here; the simple executor runs the graph as written.
         torch::jit::setGraphExecutorOptimize(false);
         at::globalContext().setFlushDenormal(true);
         torch::manual_seed(static_cast<uint64_t>(experiment.seed));
         c.train = load_dataset(experiment.data, true);
         c.test = load_dataset(experiment.data, false);
         std::cout << "data: " << c.train.size() << " training, " << c.test.size()
                   << " test samples of shape " << c.train.inputs.sizes().slice(1) << std::endl;
         for (std::size_t i = 0; i < experiment.compress.size(); ++i) {
           const CalibrationSpec& cal = experiment.compress[i].calibration;
           const int64_t wanted = cal.batches * calibration_batch_size(c, cal);
           SHRINK_CHECK(wanted <= c.train.size(),
                        cal.where << ": " << stage_name(i) << ".calibration: " << cal.batches
                                  << " batches of " << calibration_batch_size(c, cal) << " need "
                                  << wanted << " samples, the training set has " << c.train.size());
         }
       }},
      {"pretrain",
       [&] {
         if (!experiment.pretrain.enabled || resume_in_finetune) return;
         const Checkpoint* resumed = c.resume ? c.resume.get() : nullptr;
         if (resumed) restore_state(c);
         train(c, experiment.pretrain, "pretrain", c.pretrain, resumed);
         c.resume.reset();
       }},
      {"evaluate-baseline",
       [&] {
         if (!experiment.evaluate || resume_in_finetune) return;
         c.summary.baseline_accuracy = evaluate(c, c.model->module(), c.test);
         std::cout << "baseline accuracy " << std::setprecision(4) << c.summary.baseline_accuracy
                   << std::endl;
       }},
      {"compress",
       [&] {
         for (std::size_t i = 0; i < experiment.compress.size(); ++i) {
           const StageSpec& stage = experiment.compress[i];
           if (c.stages[i].prunes) {
             prune(c, i, resume_in_finetune);
             continue;
           }
           if (c.stages[i].removes_channels) {
             remove_channels(c, i);
             continue;
           }
           c.stages[i].quantizer = static_cast<int>(c.quantizers.size());
           auto q = std::make_unique<QuantizerInstance>(*c.stages[i].algorithm, stage.options);
           c.wrapped.push_back(
               std::make_unique<QuantizedModel>(*c.model, *q, c.stages[i].sites, stage.fold_bn));
           std::cout << "compress: " << stage.plugin << " on " << c.stages[i].sites.size() << " sites";
           const auto folded = c.wrapped.back()->folded_batchnorms();
           if (stage.fold_bn) {
             std::cout << ", " << folded.size() << " BatchNorm" << (folded.size() == 1 ? "" : "s")
                       << " folded";
             for (std::size_t k = 0; k < folded.size(); ++k) std::cout << (k ? ", " : " (") << folded[k];
             if (!folded.empty()) std::cout << ")";
           }
           std::cout << std::endl;
           c.folded_batchnorms.push_back(folded);
           c.quantizers.push_back(std::move(q));
         }
         if (!resume_in_finetune) return;
         restore_state(c);
         // Plugins count epochs and steps through their hooks; replay them to where the
         // checkpoint was taken (the tensors they keep were restored above).
         const int64_t per_epoch = batches_per_epoch(c);
         for (int64_t e = 0; e < c.finetune.epochs_done; ++e) {
           for (auto& q : c.quantizers) q->update_epoch(static_cast<int>(e));
           const int64_t steps = std::min(per_epoch, c.finetune.steps_done - e * per_epoch);
           for (int64_t s = 0; s < steps; ++s) {
             for (auto& q : c.quantizers) q->step();
           }
         }
       }},
      {"calibrate",
       [&] {
         if (resume_in_finetune) return;  // the checkpoint holds the calibrated state
         for (std::size_t i = 0; i < experiment.compress.size(); ++i) {
           if (experiment.compress[i].calibration.batches > 0) calibrate(c, i);
         }
       }},
      {"finetune",
       [&] {
         if (!experiment.finetune.enabled) return;
         train(c, experiment.finetune, "finetune", c.finetune, c.resume.get());
         c.resume.reset();
       }},
      {"measure",
       [&] {
         if (c.quantizers.empty()) return;
         measure_sites(c);
         std::vector<std::pair<double, std::string>> worst;
         for (const auto& w : c.wrapped) {
           for (std::size_t k = 0; k < w->sites().size(); ++k) {
             const double db = w->quantizer().sqnr_db(w->site_ids()[k]);
             if (std::isfinite(db)) worst.emplace_back(db, w->sites()[k].op_name + "." + w->sites()[k].target);
           }
         }
         std::sort(worst.begin(), worst.end());
         if (worst.empty()) return;
         std::cout << "lowest site SQNR vs float:";
         for (std::size_t k = 0; k < std::min<std::size_t>(3, worst.size()); ++k) {
           std::cout << (k ? ", " : " ") << worst[k].second << " " << std::fixed << std::setprecision(1)
                     << worst[k].first << " dB" << std::defaultfloat;
         }
         std::cout << std::endl;
       }},
      {"evaluate-compressed",
       [&] {
         if (!experiment.evaluate) return;
         c.summary.compressed_accuracy = evaluate(c, c.model->module(), c.test);
         std::cout << "compressed accuracy " << std::setprecision(4)
                   << c.summary.compressed_accuracy << std::endl;
       }},
      {"export",
       [&] {
         json calibration = json::object();
         json sites = json::array();
         for (const auto& w : c.wrapped) {
           if (!(w->quantizer().algorithm().capabilities & SHRINK_CAP_EXPORT)) continue;
           for (std::size_t k = 0; k < w->sites().size(); ++k) {
             const PlannedSite& s = w->sites()[k];
             const Calibration cal = w->quantizer().export_site(w->site_ids()[k]);
             json entry = {{"scale", tensor_json(cal.scale)},
                           {"zero_point", tensor_json(cal.zero_point)},
                           {"quant_dtype", cal.quant_dtype},
                           {"quant_scheme", cal.quant_scheme},
                           {"quant_bits", cal.quant_bits},
                           {"tracked_min", number_or_null(cal.tracked_min)},
                           {"tracked_max", number_or_null(cal.tracked_max)}};
             calibration[s.op_name][s.target] = entry;
             json site = entry;
             site["op"] = s.op_name;
             site["target"] = s.target;
             site["plugin"] = w->quantizer().algorithm().name;
             site["quant_min"] = cal.quant_min;
             site["quant_max"] = cal.quant_max;
             // Quantization SQNR of the site's output on the calibration samples, against the
             // float model's value there and against its own input (null: saw nothing, or
             // changed nothing).
             site["sqnr_db"] = number_or_null(w->quantizer().sqnr_db(w->site_ids()[k]));
             site["local_sqnr_db"] = number_or_null(w->quantizer().local_sqnr_db(w->site_ids()[k]));
             sites.push_back(site);
           }
         }
         // Stages resumed past: their tables from the restored masks.
         for (std::size_t k = 0; k < c.pruning.size(); ++k) {
           if (c.pruning[k]["ops"].is_null()) c.pruning[k].update(pruning_table(*c.pruners[k]));
         }
         fs::create_directories(c.staging);
         write_json(fs::path(c.staging) / "calibration.json", calibration);
         if (!c.pruners.empty()) save_masks(c, fs::path(c.staging) / "masks.pt");
         std::optional<Model> exported;  // model_qat.pt as a user loads it
         if (experiment.export_model) {
           // Without a compress stage the result is the trained float model, model_fp32.pt: one
           // fp32 training that several experiments then start from (their `model:`).
           const bool quantized = !c.quantizers.empty();
           c.summary.exported_file = quantized ? "model_qat.pt" : c.pruners.empty() ? "model_fp32.pt" : "model_pruned.pt";
           if (quantized) {
             for (auto& w : c.wrapped) w->bake_folded_batchnorms();
             bake_fake_quant(*c.model);
           }
           const fs::path file = fs::path(c.staging) / c.summary.exported_file;
           c.model->module().save(file.string());
           // Check what was written: reload it as a user would and score it.
           Model reloaded = Model::load(file.string());
           if (experiment.evaluate) {
             c.summary.exported_accuracy = evaluate(c, reloaded.module(), c.test);
             std::cout << c.summary.exported_file << " accuracy " << std::setprecision(4)
                       << c.summary.exported_accuracy << std::endl;
             // ATen's fake-quant rounds to nearest; a plugin that quantizes otherwise (naive
             // truncates, as NNI's does) is only approximated by the exported model.
             if (quantized && c.summary.compressed_accuracy >= 0 &&
                 std::abs(c.summary.exported_accuracy - c.summary.compressed_accuracy) > 0.005) {
               logging::warn("model_qat.pt scores " + std::to_string(c.summary.exported_accuracy) +
                        " where the run scored " + std::to_string(c.summary.compressed_accuracy) +
                        ": a plugin's fake-quant differs from ATen's round-to-nearest");
             }
           }
           if (quantized) exported = std::move(reloaded);
         }
         json int8 = nullptr;
         if (experiment.export_int8) {
           SHRINK_CHECK(exported.has_value(), "export.int8: there is no model_qat.pt to lower "
                                              "(the experiment has no compress stage)");
           const fs::path int8_file = fs::path(c.staging) / "model_int8.pt";
           const Int8Export lowered = export_int8(exported->path(), int8_file.string());
           use_int8_engine();
           torch::jit::Module int8_model = torch::jit::load(int8_file.string());
           std::pair<double, double> scored;  // accuracy, output SQNR against model_qat.pt
           scored.first = evaluate(c, int8_model, c.test, &exported->module(), &scored.second);
           c.summary.int8_accuracy = scored.first;
           const auto bytes = [](const fs::path& p) { return static_cast<int64_t>(fs::file_size(p)); };
           int8 = {{"file", "model_int8.pt"},
                   {"engine", "onednn"},
                   {"accuracy", experiment.evaluate ? json(scored.first) : json(nullptr)},
                   {"sqnr_db_vs_fake_quant", std::isfinite(scored.second) ? json(scored.second) : json(nullptr)},
                   {"quantized_ops", lowered.quantized_ops},
                   {"float_ops", lowered.float_ops},
                   {"notes", lowered.notes},
                   {"file_bytes", bytes(int8_file)},
                   {"fp32_file_bytes", bytes(experiment.model)},
                   {"size_ratio", static_cast<double>(bytes(int8_file)) / static_cast<double>(bytes(experiment.model))}};
           std::cout << "model_int8.pt: " << lowered.quantized_ops << " int8 ops";
           if (experiment.evaluate) std::cout << ", accuracy " << std::setprecision(4) << scored.first;
           std::cout << ", output SQNR vs model_qat.pt " << std::setprecision(3) << scored.second
                     << " dB, " << std::setprecision(2) << int8["size_ratio"].get<double>()
                     << "x the fp32 file" << std::defaultfloat << std::endl;
           for (const auto& line : lowered.float_ops) std::cout << "  float: " << line << std::endl;
           for (const auto& line : lowered.notes) std::cout << "  note: " << line << std::endl;
         }
         const double baseline_spe = c.pretrain.seconds_per_epoch(c.train.size());
         const double compressed_spe = c.finetune.seconds_per_epoch(c.train.size());
         c.summary.baseline_seconds_per_epoch = baseline_spe;
         c.summary.compressed_seconds_per_epoch = compressed_spe;
         auto accuracy = [&](double a) { return a >= 0 ? json(a) : json(nullptr); };
         json report = {
             {"shrink_version", version()},
             {"experiment",
              {{"file", experiment.file}, {"resolved", yaml_to_json(YAML::Load(experiment.resolved_yaml))}}},
             {"metrics",
              {{"baseline_accuracy", accuracy(c.summary.baseline_accuracy)},
               {"compressed_accuracy", accuracy(c.summary.compressed_accuracy)},
               {"exported_accuracy", accuracy(c.summary.exported_accuracy)},
               {"int8_accuracy", accuracy(c.summary.int8_accuracy)}}},
             {"train",
              {{"baseline_seconds_per_epoch", baseline_spe},
               {"compressed_seconds_per_epoch", compressed_spe},
               {"overhead", baseline_spe > 0 && compressed_spe > 0 ? json(compressed_spe / baseline_spe)
                                                                   : json(nullptr)},
               {"pretrain", c.pretrain.to_json()},
               {"finetune", c.finetune.to_json()}}},
             {"calibration", c.calibration},
             {"folded_batchnorms", c.folded_batchnorms},
             {"pruning", c.pruning},
             {"channel_removal", c.channel_removal},
             {"int8", int8},
             {"sites", sites}};
         write_json(fs::path(c.staging) / "report.json", report);
       }},
  };

  std::error_code ec;
  fs::remove_all(c.staging, ec);
  try {
    for (const Pass& pass : passes) {
      const auto start = Clock::now();
      pass.run();
      logging::debug(std::string("pass ") + pass.name + " took " + std::to_string(seconds_since(start)) + " s");
    }
    // Move the complete set into place; the checkpoint has served its purpose. A result an
    // earlier run left there that this run did not write (model_qat.pt, with export.model off)
    // goes, so that nothing stale sits beside the new report.
    fs::create_directories(c.out_dir);
    for (const char* name :
         {"report.json", "calibration.json", "masks.pt", "model_fp32.pt", "model_pruned.pt", "model_qat.pt",
          "model_int8.pt"}) {
      if (!fs::exists(fs::path(c.staging) / name)) fs::remove(fs::path(c.out_dir) / name, ec);
    }
    for (const auto& entry : fs::directory_iterator(c.staging)) {
      fs::rename(entry.path(), fs::path(c.out_dir) / entry.path().filename());
    }
    fs::remove_all(c.staging, ec);
    fs::remove(fs::path(c.out_dir) / "checkpoint.pt", ec);
  } catch (const StopRequested&) {
    fs::remove_all(c.staging, ec);
    c.summary.stopped = true;
    std::cout << "stopped after " << options.stop_after_epochs << " epochs as asked; continue with "
              << "--resume" << std::endl;
  } catch (...) {
    fs::remove_all(c.staging, ec);
    throw;
  }
  c.summary.out_dir = c.out_dir;
  return c.summary;
}

}  // namespace shrink
