#include "run/run_state.hpp"

#include <shrink/core/error.hpp>
#include <shrink/core/version.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/prune/pruning_stage.hpp>

#include "run/checkpoint.hpp"

#include <torch/script.h>
#include <torch/torch.h>

#include <sys/stat.h>

#include <ctime>
#include <filesystem>

namespace shrink {
namespace {

nlohmann::json checkpoint_meta(const RunContext& c, const std::string& phase) {
  return {{"shrink_version", version()},
          {"layout", kCheckpointLayout},
          {"experiment", c.experiment->resolved_yaml},
          {"phase", phase},
          {"world", c.world()},
          {"pretrain", c.pretrain.to_json()},
          {"finetune", c.finetune.to_json()},
          {"baseline_accuracy", c.summary.baseline_accuracy},
          {"history", c.history}};
}

template <typename F>
void for_each_mask(const RunContext& c, F f) {
  for (std::size_t i = 0; i < c.pruners.size(); ++i) {
    const std::string stage = "mask/" + std::to_string(i) + "/";
    for (const MaskedOp& op : c.pruners[i]->ops()) {
      f(stage + op.target.op_name + "/weight_mask", op.weight_mask);
      if (op.bias_mask.defined()) f(stage + op.target.op_name + "/bias_mask", op.bias_mask);
    }
    for (const auto& fo : c.pruners[i]->followers()) f(stage + fo.op_name + "/mask", fo.mask);
  }
}

// Every tensor a checkpoint holds, by key: the model's parameters and buffers, the masks, then
// each quantizer's per-site state.
template <typename F>
void for_each_checkpointed(const RunContext& c, F f) {
  for (const auto& p : c.model->module().named_parameters(true)) f("model/" + p.name, p.value);
  for (const auto& b : c.model->module().named_buffers(true)) f("model/" + b.name, b.value);
  for_each_mask(c, f);
  for (std::size_t i = 0; i < c.quantizers.size(); ++i) {
    QuantizerInstance& q = *c.quantizers[i];
    for (int site = 0; site < q.site_count(); ++site) {
      for (const auto& s : q.site_state(site)) {
        f("quant/" + std::to_string(i) + "/" + std::to_string(site) + "/" + s.name, s.value);
      }
    }
  }
}

}  // namespace

void save_run_checkpoint(RunContext& c, const std::string& phase,
                         torch::optim::Optimizer& optimizer) {
  Checkpoint k;
  k.meta = checkpoint_meta(c, phase).dump();
  for_each_checkpointed(c,
                        [&](const std::string& key, const at::Tensor& t) { k.tensors[key] = t; });
  k.tensors["rng"] = default_generator_state();
  std::filesystem::create_directories(c.out_dir);
  k.save(std::filesystem::path(c.out_dir) / "checkpoint.pt", &optimizer);
}

std::string describe_run_checkpoint(const std::filesystem::path& file) {
  std::string what = "an unreadable checkpoint";
  try {
    const nlohmann::json meta = nlohmann::json::parse(Checkpoint::load(file).meta);
    const std::string phase = meta.at("phase");
    what = phase + " epoch " + std::to_string(PhaseProgress::from_json(meta.at(phase)).epochs_done);
  } catch (const std::exception&) {
    // Still worth naming, with its time: the user decides what to do with it.
  }
  struct stat s {};
  char when[32] = "at an unknown time";
  if (::stat(file.c_str(), &s) == 0) {
    std::tm local{};
    localtime_r(&s.st_mtime, &local);
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M", &local);
  }
  return what + ", written " + when;
}

void restore_run_state(RunContext& c, const Checkpoint& k) {
  torch::NoGradGuard no_grad;
  for_each_checkpointed(c, [&](const std::string& key, const at::Tensor& into) {
    auto it = k.tensors.find(key);
    SHRINK_CHECK(it != k.tensors.end() && it->second.sizes() == into.sizes(),
                 k.file << ": does not match the model (" << key << ")");
    into.copy_(it->second);
  });
  set_default_generator_state(k.tensors.at("rng"));
}

}  // namespace shrink
