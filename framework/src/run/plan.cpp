#include <shrink/core/error.hpp>
#include <shrink/export/int8_placement.hpp>
#include <shrink/graph/channel_removal.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/graph/quantized_model.hpp>
#include <shrink/host/plugin_check.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/prune/pruning_stage.hpp>
#include <shrink/run/plan.hpp>
#include <shrink/run/plugin_keys.hpp>

#include <torch/script.h>

#include <algorithm>

namespace shrink {
namespace {

// What the stages checked so far do; what a stage may come after depends on it.
struct Before {
  bool prunes = false;
  bool quantizes = false;
  bool removes_channels = false;
  std::vector<std::string> pruned_ops;  // by the pruning stages so far
};

// Throwaway copies the checks set plugins up on (their setup_site sees each site).
struct Probe {
  Model model;
  std::vector<std::unique_ptr<QuantizerInstance>> quantizers;
  std::vector<std::unique_ptr<QuantizedModel>> wrapped;
};

void check_remove_channels(const Before& before, const std::string& where) {
  SHRINK_CHECK(before.prunes, where << ".remove_channels: no pruning stage before it (nothing to "
                                       "remove)");
  SHRINK_CHECK(!before.quantizes, where
                                      << ".remove_channels: put it before the quantization "
                                         "stages (their sites are set up for the model's shapes)");
  SHRINK_CHECK(!before.removes_channels, where << ".remove_channels: only once per experiment");
}

// Channel 0 of every pruned op zeroed in a copy of the model, then removed: an op that channel
// removal cannot follow fails here, before any training, and not after the pruning stages'.
void dry_run_channel_removal(const Experiment& x, const Before& before, const std::string& where) {
  torch::jit::Module copy = load_torchscript(x.model);
  {
    torch::NoGradGuard no_grad;
    for (const std::string& name : before.pruned_ops) {
      torch::jit::Module op = copy;
      for (std::size_t at = 0, dot = 0; dot != std::string::npos; at = dot + 1) {
        dot = name.find('.', at);
        op = op.attr(name.substr(at, dot == std::string::npos ? dot : dot - at)).toModule();
      }
      for (const char* tensor : {"weight", "bias"}) {
        if (op.hasattr(tensor) && op.attr(tensor).isTensor()) op.attr(tensor).toTensor()[0].zero_();
      }
    }
  }
  try {
    remove_pruned_channels(copy);
  } catch (const Error& e) {
    throw Error(where + ".remove_channels: " + e.what());
  }
}

// One importance and one calc_mask per pruned op on a throwaway instance, every check on, so that
// a masker that throws or returns a wrong mask fails here and not after the stage's training.
void dry_run_masker(const AlgorithmInfo& algorithm, const Options& options,
                    const PruningStage& pruner) {
  MaskerInstance masker(algorithm, options);
  std::vector<WrapperSpec> wrappers;
  for (const MaskedOp& op : pruner.ops()) wrappers.push_back(pruner.wrapper(op));
  dry_run(masker, wrappers, 0.5);  // on the probe model's weights
}

// Its config_list against the model, its schedule, its training, every op type against the
// plugin (on the probe model), and a dry run of the masker.
void check_pruning_stage(const StageSpec& stage, const std::string& where, const Model& model,
                         Probe& probe, const Before& before, CheckedStage& checked) {
  SHRINK_CHECK(stage.calibration.batches == 0,
               stage.calibration.where << ": calibration: '" << stage.plugin
                                       << "' prunes; calibration is for post-training quantizers");
  SHRINK_CHECK(!stage.fold_bn,
               where << ".fold_bn: '" << stage.plugin << "' prunes; fold_bn is for quantizers");
  SHRINK_CHECK(stage.schedule.kind == "one_shot" || stage.train.enabled,
               stage.schedule.where << ": " << where << ".schedule: a " << stage.schedule.kind
                                    << " schedule spreads its updates over the stage's training; "
                                       "add train: {epochs: N} (or steps)");
  SHRINK_CHECK(!ranks_in_training(*checked.algorithm) || stage.train.enabled,
               where << ": '" << stage.plugin
                     << "' ranks by what it observes in training; add "
                        "train: {epochs: N} (or steps) to the stage");
  checked.prunes = true;
  checked.prune_targets = plan_pruning(stage.config_list, model.ops());
  PruningStage pruner(*checked.algorithm, stage.options, checked.prune_targets,
                      probe.model.module(), where);
  dry_run_masker(*checked.algorithm, stage.options, pruner);
  // Its outputs are tapped by rewriting the model's graph, which a quantization stage before it
  // has already rewritten (and keeps pointers into).
  SHRINK_CHECK(!(before.quantizes && stage.train.enabled && pruner.observes_outputs()),
               where << ": '" << stage.plugin
                     << "' observes the pruned ops' outputs in training, which cannot come after "
                        "a quantization stage; prune first");
}

// What the plugin can do against what the stage and the export ask of it.
void check_quantizer_capabilities(const Experiment& x, const StageSpec& stage,
                                  const std::string& where, const std::string& name,
                                  const AlgorithmInfo& a) {
  SHRINK_CHECK(!x.export_model || (a.capabilities & SHRINK_CAP_EXPORT),
               where << ".plugin: '" << stage.plugin
                     << "' does not export calibration, so model_qat.pt cannot be written "
                        "(set export.model: false)");
  const bool calibrates = (a.capabilities & SHRINK_CAP_CALIBRATION) != 0;
  const bool trains = (a.capabilities & SHRINK_CAP_TRAINING) != 0;
  SHRINK_CHECK(stage.calibration.batches == 0 || calibrates,
               stage.calibration.where
                   << ": " << name << ".calibration: plugin '" << stage.plugin
                   << "' does not calibrate (capabilities: " << a.capabilities_text() << ")");
  SHRINK_CHECK(stage.calibration.batches > 0 || trains,
               where << ": plugin '" << stage.plugin
                     << "' is post-training only and needs a calibration pass "
                        "(add calibration: {batches: N})");
}

void check_no_pruning_keys(const StageSpec& stage) {
  for (const ConfigEntry& e : stage.config_list.entries) {
    for (const std::string& key : pruning_keys()) {
      SHRINK_CHECK(!e.settings.find(key), e.where << ": config_list[" << e.index << "]: " << key
                                                  << " is a pruning key; '" << stage.plugin
                                                  << "' quantizes");
    }
  }
}

void check_int8_bits(const std::vector<PlannedSite>& sites, const std::string& where) {
  for (const PlannedSite& s : sites) {
    const std::string bits = s.config.find("quant_bits") ? *s.config.find("quant_bits") : "8";
    SHRINK_CHECK(bits == "8", where << ": " << s.key() << " is a " << bits
                                    << "-bit site; export.int8 needs 8-bit sites (LibTorch's "
                                       "int8 kernels), or set export.int8: false");
  }
}

void check_quantizer_stage(const Experiment& x, std::size_t i, const std::string& where,
                           const Model& model, Probe& probe, CheckedStage& checked) {
  const StageSpec& stage = x.compress[i];
  SHRINK_CHECK(checked.algorithm->is_quantizer(),
               where << ".plugin: '" << stage.plugin << "' is a " << checked.algorithm->kinds_text()
                     << ", neither a quantizer nor a weight masker");
  SHRINK_CHECK(stage.schedule.where.empty() && !stage.train.enabled,
               where << ": schedule and train are for pruning stages; '" << stage.plugin
                     << "' quantizes (it trains in finetune)");
  check_no_pruning_keys(stage);
  check_quantizer_capabilities(x, stage, where, stage_name(i), *checked.algorithm);
  checked.sites = plan_quantization_sites(stage.config_list, model, checked.site_notes);
  if (x.export_int8) check_int8_bits(checked.sites, where);
  try {
    probe.quantizers.push_back(
        std::make_unique<QuantizerInstance>(*checked.algorithm, stage.options));
    probe.wrapped.push_back(std::make_unique<QuantizedModel>(probe.model, *probe.quantizers.back(),
                                                             checked.sites, stage.fold_bn));
    // One quantize per weight site and one export_site per site, every check on: a plugin that
    // fails or returns something wrong says so now, not after the training.
    dry_run(*probe.quantizers.back());
    for (const auto& point : probe.wrapped.back()->shared_points()) {
      checked.site_notes.push_back(point.text());
    }
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
}

CheckedStage check_stage(const Experiment& x, std::size_t i, const Model& model,
                         PluginRegistry& registry, Probe& probe, const Before& before) {
  const StageSpec& stage = x.compress[i];
  const std::string where = stage.where + ": " + stage_name(i);
  CheckedStage checked;
  if (stage.remove_channels) {
    check_remove_channels(before, where);
    dry_run_channel_removal(x, before, where);
    checked.removes_channels = true;
    return checked;
  }
  try {
    checked.algorithm = &registry.require(stage.plugin);
  } catch (const Error& e) {
    throw Error(where + ".plugin: " + e.what());
  }
  check_plugin_keys(stage.config_list, *checked.algorithm, stage_name(i));
  if (!checked.algorithm->is_masker() || checked.algorithm->is_quantizer()) {
    check_quantizer_stage(x, i, where, model, probe, checked);
    return checked;
  }
  SHRINK_CHECK(!before.removes_channels,
               where << ": pruning after remove_channels is not supported; prune before it");
  try {
    check_pruning_stage(stage, where, model, probe, before, checked);
  } catch (const Error& e) {
    const std::string what = e.what();
    // Messages that already name the stage keep their own prefix.
    throw Error(what.find(stage_name(i)) != std::string::npos ? what : where + ": " + what);
  }
  return checked;
}

}  // namespace

namespace {

// One forward of zeros of shape `batch` in eval mode, no gradients; the model's mode is kept.
c10::IValue forward_zeros(torch::jit::Module& module, const std::vector<int64_t>& batch) {
  const bool training = module.is_training();
  module.eval();
  torch::NoGradGuard no_grad;
  struct Restore {
    torch::jit::Module& m;
    bool training;
    ~Restore() { m.train(training); }
  } restore{module, training};
  return module.forward({at::zeros(batch)});
}

// [1, H, W, C] -> [1, C, H, W] when that is what the model takes: the data is channels last.
std::string channels_last_hint(torch::jit::Module& module, const std::vector<int64_t>& batch) {
  if (batch.size() != 4 || batch[3] > 4) return "";
  const std::vector<int64_t> nchw = {1, batch[3], batch[1], batch[2]};
  try {
    forward_zeros(module, nchw);
  } catch (const std::exception&) {
    return "";
  }
  return "; it takes " + c10::str(c10::IntArrayRef(nchw)) +
         ": are the samples channels last (NHWC)? " + "store them as [N, C, H, W]";
}

}  // namespace

int64_t check_model_on_data(const Experiment& x, Model& model, const std::vector<int64_t>& shape) {
  std::vector<int64_t> batch = {1};
  batch.insert(batch.end(), shape.begin(), shape.end());
  c10::IValue out;
  try {
    out = forward_zeros(model.module(), batch);
  } catch (const std::exception& e) {
    throw Error(model.path() + " does not take the samples of " + x.data.path + " (one is " +
                c10::str(c10::IntArrayRef(batch)) + "): " + interpreter_error_line(e) +
                channels_last_hint(model.module(), batch));
  }
  SHRINK_CHECK(out.isTensor() && out.toTensor().dim() == 2 && out.toTensor().size(0) == 1 &&
                   out.toTensor().size(1) >= 2,
               model.path() << ": one sample of shape " << c10::IntArrayRef(batch) << " gives "
                            << (out.isTensor() ? c10::str(out.toTensor().sizes()) : out.tagKind())
                            << ", expected class scores of shape [1, classes]");
  return out.toTensor().size(1);
}

std::string stage_name(std::size_t i) { return "compress[" + std::to_string(i) + "]"; }

std::vector<PlannedSite> plan_quantization_sites(const ConfigList& config, const Model& model,
                                                 std::vector<std::string>& notes) {
  std::vector<PlannedSite> sites = plan_sites(config, model.ops());
  for (const ConfigEntry& e : config.entries) {
    if (e.preset.empty()) continue;
    const Int8Placement placed = place_int8_sites(model, config, e);
    SHRINK_CHECK(placed.weighted_ops > 0,
                 e.where << ": preset " << e.preset << ": " << model.path()
                         << " has no convolution or linear module that int8 kernels can run "
                            "(their weights must be module parameters)");
    add_preset_sites(e, placed.sites, model.ops(), sites);
    notes.push_back("preset " + e.preset + ": " + std::to_string(placed.weighted_ops) +
                    " convolutions and linears and " + std::to_string(placed.other_ops) +
                    " other ops int8, " + std::to_string(placed.sites.size()) + " sites");
    for (const std::string& n : placed.notes) notes.push_back("preset " + e.preset + ": " + n);
  }
  return sites;
}

bool ranks_in_training(const AlgorithmInfo& a) { return a.is_pruner() && a.ranks_in_training(); }

bool writes_pruned_model(const std::vector<CheckedStage>& stages) {
  for (const CheckedStage& s : stages) {
    if (s.algorithm != nullptr) return s.prunes;  // the first stage with a plugin decides
  }
  return false;
}

namespace {

// export.int8 lowers conv2d/linear ops whose weight is fake-quantized at 8 bits and whose input
// is an 8-bit activation: without one such weight site and some activation site there is nothing
// to lower, which would otherwise be found after all the training.
void check_int8_request(const Experiment& x, const std::vector<CheckedStage>& stages) {
  if (!x.export_int8) return;
  bool weight = false, activation = false;
  for (const CheckedStage& s : stages) {
    for (const PlannedSite& site : s.sites) {
      const bool weighted_op = site.op_type == "Conv2d" || site.op_type == "Linear";
      weight |= weighted_op && site.quant_type == QuantType::kWeight;
      activation |= site.quant_type != QuantType::kWeight;
    }
  }
  SHRINK_CHECK(weight && activation,
               x.file << ": export.int8: no Conv2d or Linear has its weight quantized"
                      << (weight ? " with an activation site before it" : "")
                      << ", so nothing could run on int8 kernels; quantize some (target_names: "
                         "[_input_, weight]) or set export.int8: false");
}

}  // namespace

std::vector<CheckedStage> check_stages(const Experiment& x, const Model& model,
                                       PluginRegistry& registry) {
  std::vector<CheckedStage> out;
  Probe probe{Model::load(x.model), {}, {}};
  Before before;
  for (std::size_t i = 0; i < x.compress.size(); ++i) {
    out.push_back(check_stage(x, i, model, registry, probe, before));
    before.prunes |= out.back().prunes;
    before.removes_channels |= out.back().removes_channels;
    for (const PruneTarget& t : out.back().prune_targets) before.pruned_ops.push_back(t.op_name);
    before.quantizes |= out.back().algorithm != nullptr && !out.back().prunes;
  }
  check_int8_request(x, out);
  return out;
}

}  // namespace shrink
