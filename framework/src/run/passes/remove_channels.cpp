#include <shrink/core/error.hpp>
#include <shrink/graph/channel_removal.hpp>
#include <shrink/graph/measure.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/prune/pruning_stage.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>
#include <shrink/run/plan.hpp>

#include "run/merged_masks.hpp"

#include <torch/script.h>

#include <torch/torch.h>
#include <map>

#include <algorithm>
#include <iomanip>
#include <sstream>

namespace shrink {
namespace {

// "conv1 20->10, fc1 in 800->400": what each resized module lost.
std::string resized_list(const ChannelRemoval& removal, nlohmann::json& modules) {
  std::ostringstream list;
  for (const ResizedModule& r : removal.modules) {
    modules.push_back({{"op", r.name},
                       {"type", r.type},
                       {"out_before", r.out_before},
                       {"out_after", r.out_after},
                       {"in_before", r.in_before},
                       {"in_after", r.in_after}});
    list << (list.tellp() > 0 ? ", " : "") << r.name << " ";
    if (r.out_after != r.out_before) {
      list << r.out_before << "->" << r.out_after;
    } else {
      list << "in " << r.in_before << "->" << r.in_after;
    }
  }
  return list.str();
}

// The pruning tables' rows get the channels removed for real, and why a pruned filter stayed.
nlohmann::json kept_pruned(RunContext& c, const ChannelRemoval& removal) {
  nlohmann::json kept = nlohmann::json::array();
  std::map<std::string, const KeptPruned*> why;
  for (const KeptPruned& k : removal.kept_pruned) {
    kept.push_back({{"op", k.name}, {"channels", k.channels}, {"why", k.why}});
    why[k.name] = &k;
  }
  std::map<std::string, int64_t> removed;
  for (const ResizedModule& r : removal.modules) removed[r.name] = r.out_before - r.out_after;
  for (auto& stage : c.pruning) {
    if (!stage.contains("ops") || !stage["ops"].is_array()) continue;
    for (auto& row : stage["ops"]) {
      const std::string op = row["op"];
      row["channels_removed"] = removed.count(op) ? removed[op] : 0;
      row["kept_pruned"] = why.count(op) ? nlohmann::json(why[op]->why) : nlohmann::json(nullptr);
    }
  }
  return kept;
}

}  // namespace

std::string RemoveChannelsPass::name() const { return stage_name(stage_); }

void RemoveChannelsPass::run(RunContext& c) {
  torch::NoGradGuard no_grad;
  c.set_training(false);
  torch::jit::Module& module = c.model->module();
  const at::Tensor x =
      read_batch(c.test, at::arange(std::min<int64_t>(64, c.test.size())), false, 0).inputs;
  SHRINK_CHECK(x.size(0) > 0, name() << ": the first 64 test samples are all unreadable; "
                                        "the removal is checked on them");
  const at::Tensor before = module.forward({x}).toTensor();
  torch::jit::Module masked = module.clone();
  const int64_t macs_before = count_macs(module, x);
  c.masks_before_removal = merged_masks(c);
  const ChannelRemoval removal = remove_pruned_channels(module);
  const at::Tensor after = module.forward({x}).toTensor();
  const double scale = before.abs().max().item<double>();
  const double diff = (after - before).abs().max().item<double>() / std::max(scale, 1e-30);
  SHRINK_CHECK(after.sizes() == before.sizes() && diff <= 1e-4,
               name() << ": remove_channels changed the model's outputs (max difference " << diff
                      << " of their largest value); the pruned model is kept as it was");
  for (auto& p : c.pruners) p->rebind(module, removal);
  const int64_t macs_after = count_macs(module, x);
  const auto latency = median_latency({&masked, &module}, x, 8).ms;
  nlohmann::json modules = nlohmann::json::array();
  const std::string list = resized_list(removal, modules);
  c.channel_removal = {{"stage", static_cast<int64_t>(stage_)},
                       {"modules", modules},
                       {"channels_removed", removal.channels_removed},
                       {"parameters_before", removal.parameters_before},
                       {"parameters_after", removal.parameters_after},
                       {"macs_before", macs_before},
                       {"macs_after", macs_after},
                       {"latency_batch", x.size(0)},
                       {"latency_ms_before", latency[0]},
                       {"latency_ms_after", latency[1]},
                       {"max_output_difference", diff},
                       {"kept_pruned", kept_pruned(c, removal)}};
  std::ostringstream line;
  line << name() << ": removed " << removal.channels_removed << " channels (" << list
       << "); parameters " << removal.parameters_before << " -> " << removal.parameters_after
       << ", MACs per sample " << macs_before << " -> " << macs_after << ", batch " << x.size(0)
       << " " << std::fixed << std::setprecision(3) << latency[0] << " -> " << latency[1]
       << " ms; outputs as before (max difference " << std::scientific << std::setprecision(1)
       << diff << ")";
  c.say(line.str());
  for (const KeptPruned& k : removal.kept_pruned) {
    c.say(name() + ": " + k.name + " keeps " + std::to_string(k.channels) + " pruned channel" +
          (k.channels == 1 ? "" : "s") + ": " + k.why);
  }
}

}  // namespace shrink
