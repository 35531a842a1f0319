#include <shrink/error.hpp>
#include <shrink/pruning.hpp>

#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <sstream>

namespace shrink {

Schedule schedule_from_name(const std::string& name, const std::string& where) {
  if (name == "one_shot") return Schedule::kOneShot;
  if (name == "linear") return Schedule::kLinear;
  if (name == "agp") return Schedule::kAgp;
  throw Error(where + ": schedule.kind is '" + name + "', expected one_shot, linear or agp");
}

double scheduled_sparsity(Schedule kind, double target, int64_t update, int64_t updates) {
  SHRINK_CHECK(updates >= 1 && update >= 1 && update <= updates,
               "pruning schedule: update " << update << " of " << updates);
  const double t = static_cast<double>(update) / static_cast<double>(updates);
  switch (kind) {
    case Schedule::kOneShot: return target;
    case Schedule::kLinear: return target * t;
    case Schedule::kAgp: return target * (1.0 - std::pow(1.0 - t, 3.0));
  }
  return target;
}

std::vector<int64_t> allocate_global(const std::vector<RankedLayer>& layers, double sparsity) {
  struct Unit {
    double score;
    std::size_t layer;
    int64_t index;
  };
  std::vector<Unit> units;
  int64_t total = 0;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const at::Tensor s = layers[l].scores.reshape({-1}).to(at::kDouble).contiguous();
    const double* p = s.data_ptr<double>();
    for (int64_t i = 0; i < s.numel(); ++i) units.push_back({p[i], l, i});
    total += s.numel() * layers[l].elements_per_unit;
  }
  std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) {
    return a.score < b.score || (a.score == b.score && (a.layer < b.layer || (a.layer == b.layer && a.index < b.index)));
  });
  const auto budget = static_cast<int64_t>(std::floor(static_cast<double>(total) * sparsity + 1e-9));
  std::vector<int64_t> pruned(layers.size(), 0);
  int64_t used = 0;
  for (const Unit& u : units) {
    const int64_t size = layers[u.layer].elements_per_unit;
    if (used + size > budget) break;
    used += size;
    ++pruned[u.layer];
  }
  for (std::size_t l = 0; l < layers.size(); ++l) pruned[l] = std::min(pruned[l], layers[l].max_prune);
  return pruned;
}

namespace {

torch::jit::Module submodule(torch::jit::Module module, const std::string& path) {
  std::string rest = path;
  for (std::size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
    module = module.attr(rest.substr(0, dot)).toModule();
  }
  return module.attr(rest).toModule();
}

bool listed(const char* csv, const std::string& type) {
  if (csv == nullptr || *csv == '\0') return true;
  std::stringstream in(csv);
  for (std::string t; std::getline(in, t, ',');) {
    if (t == type) return true;
  }
  return false;
}

}  // namespace

PruningStage::PruningStage(const AlgorithmInfo& algorithm, const Options& options,
                           std::vector<PruneTarget> targets, torch::jit::Module& module, std::string name)
    : masker_(std::make_unique<MaskerInstance>(algorithm, options)), name_(std::move(name)) {
  const char* supported = SHRINK_HAS_FIELD(algorithm.descriptor, shrink_algorithm_descriptor, supported_op_types)
                              ? algorithm.descriptor->supported_op_types
                              : nullptr;
  for (PruneTarget& t : targets) {
    SHRINK_CHECK(listed(supported, t.op_type),
                 t.where << ": " << name_ << ": plugin '" << algorithm.name << "' cannot prune op '"
                         << t.op_name << "' of type " << t.op_type << " (it handles " << supported << ")");
    MaskedOp op;
    torch::jit::Module m = submodule(module, t.op_name);
    op.weight = m.attr("weight").toTensor();
    if (t.has_bias) op.bias = m.attr("bias").toTensor();
    op.weight_mask = torch::ones_like(op.weight);
    op.target = std::move(t);
    ops_.push_back(std::move(op));
  }
  penalty_ = masker_->l1_penalty();
}

WrapperSpec PruningStage::wrapper(const MaskedOp& op) const {
  WrapperSpec w;
  w.module_name = op.target.op_name;
  w.module_type = op.target.op_type;
  w.weight = op.weight.detach();
  if (op.bias.defined()) w.bias = op.bias.detach();
  return w;
}

void PruningStage::update(Schedule kind, int64_t update, int64_t updates) {
  torch::NoGradGuard no_grad;
  apply_masks();  // rank on the weights as the model uses them
  // Per-layer sparsities: each op its own, or its global group's share.
  std::vector<double> sparsity(ops_.size(), 0.0);
  std::map<int, std::vector<std::size_t>> groups;  // entry index -> ops ranked together
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    const PruneTarget& t = ops_[i].target;
    if (t.global) {
      groups[t.entry_index].push_back(i);
    } else {
      sparsity[i] = std::min(scheduled_sparsity(kind, t.sparsity, update, updates), t.max_sparsity);
    }
  }
  for (const auto& group : groups) {
    std::vector<RankedLayer> layers;
    for (std::size_t i : group.second) {
      const MaskedOp& op = ops_[i];
      at::Tensor scores = masker_->importance(wrapper(op), static_cast<int>(i));
      SHRINK_CHECK(scores.defined(), op.target.where << ": " << name_ << ": plugin '" << algorithm().name
                                                     << "' gives no importance scores, so it cannot rank "
                                                        "across layers (total_sparsity); use sparse_ratio");
      RankedLayer layer;
      layer.elements_per_unit = op.weight.numel() / std::max<int64_t>(scores.numel(), 1);
      const int64_t units = scores.numel();
      layer.max_prune = std::min<int64_t>(units - 1, static_cast<int64_t>(std::floor(
                                                         static_cast<double>(units) * op.target.max_sparsity + 1e-9)));
      layer.scores = std::move(scores);
      layers.push_back(std::move(layer));
    }
    const double total = scheduled_sparsity(kind, ops_[group.second.front()].target.sparsity, update, updates);
    const std::vector<int64_t> pruned = allocate_global(layers, total);
    for (std::size_t k = 0; k < group.second.size(); ++k) {
      const int64_t units = layers[k].scores.numel();
      // Half a unit over: the masker's floor(units * sparsity) is then exactly pruned[k].
      sparsity[group.second[k]] = pruned[k] == 0 ? 0.0 : (static_cast<double>(pruned[k]) + 0.5) / static_cast<double>(units);
    }
  }
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    MaskedOp& op = ops_[i];
    Masks m = masker_->calc_mask(sparsity[i], wrapper(op), static_cast<int>(i));
    op.weight_mask = m.weight_mask.to(op.weight.scalar_type());
    op.bias_mask = m.bias_mask.defined() ? m.bias_mask.to(op.bias.scalar_type()) : at::Tensor();
  }
  apply_masks();
}

void PruningStage::apply_masks() {
  torch::NoGradGuard no_grad;
  for (MaskedOp& op : ops_) {
    op.weight.mul_(op.weight_mask);
    if (op.bias_mask.defined()) op.bias.mul_(op.bias_mask);
  }
}

void PruningStage::mask_gradients() {
  torch::NoGradGuard no_grad;
  for (MaskedOp& op : ops_) {
    if (op.weight.grad().defined()) op.weight.mutable_grad().mul_(op.weight_mask);
    if (op.bias_mask.defined() && op.bias.grad().defined()) op.bias.mutable_grad().mul_(op.bias_mask);
  }
}

void PruningStage::observe() {
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    WrapperSpec w = wrapper(ops_[i]);
    if (!ops_[i].weight.grad().defined()) continue;
    w.weight_grad = ops_[i].weight.grad().detach();
    masker_->observe(w, static_cast<int>(i));
  }
}

at::Tensor PruningStage::penalty() {
  if (penalty_ == 0.0 || ops_.empty()) return {};
  at::Tensor sum = ops_.front().weight.abs().sum();
  for (std::size_t i = 1; i < ops_.size(); ++i) sum = sum + ops_[i].weight.abs().sum();
  return sum * penalty_;
}

}  // namespace shrink
