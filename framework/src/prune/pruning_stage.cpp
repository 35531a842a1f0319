#include <shrink/core/error.hpp>
#include <shrink/dist/communicator.hpp>
#include <shrink/prune/pruning_stage.hpp>

#include "graph/graph_utils.hpp"

#include <torch/library.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <numeric>
#include <sstream>

// shrink::tap(x, tap, channel_dim): x, and in training (x needs a gradient) a record, in backward,
// of sum over positions of x * dLoss/dx per sample and channel ([N, C]), kept under `tap` for
// PruningStage::observe. channel_dim: 1 (convolutions) or -1 (linears).
namespace shrink {
namespace {

struct TapRecords {
  std::mutex mutex;
  std::map<int64_t, at::Tensor>
      products;  // tap -> [N, C] of the latest backward (summed over calls)
  int64_t next = 1;
};
const c10::Symbol kTap = c10::Symbol::fromQualString("shrink::tap");

TapRecords& tap_records() {
  static TapRecords records;
  return records;
}

struct Tap : torch::autograd::Function<Tap> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t tap,
                            int64_t channel_dim) {
    ctx->saved_data["tap"] = tap;
    ctx->saved_data["channel_dim"] = channel_dim;
    ctx->save_for_backward({x});
    return x.clone();  // a new tensor: what follows may modify it in place
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor& g = grads.at(0);
    if (g.defined()) {
      torch::NoGradGuard no_grad;
      const at::Tensor x = ctx->get_saved_variables().at(0);
      at::Tensor p = (x * g).to(at::kFloat);
      if (ctx->saved_data["channel_dim"].toInt() == 1) {
        p = p.dim() > 2 ? p.flatten(2).sum(2) : p.reshape({p.size(0), -1});
      } else {
        p = p.dim() == 1 ? p.unsqueeze(0) : p.reshape({p.size(0), -1, p.size(-1)}).sum(1);
      }
      TapRecords& records = tap_records();
      std::lock_guard<std::mutex> lock(records.mutex);
      auto it = records.products.find(ctx->saved_data["tap"].toInt());
      if (it != records.products.end()) it->second = it->second.defined() ? it->second + p : p;
    }
    return {g, at::Tensor(), at::Tensor()};
  }
};

at::Tensor tap_op(const at::Tensor& x, int64_t tap, int64_t channel_dim) {
  if (!at::GradMode::is_enabled() || !x.requires_grad()) return x;
  return Tap::apply(x, tap, channel_dim);
}

}  // namespace
}  // namespace shrink

TORCH_LIBRARY_FRAGMENT(shrink, m) {
  m.def(torch::schema("shrink::tap(Tensor x, int tap, int channel_dim) -> Tensor",
                      c10::AliasAnalysisKind::CONSERVATIVE));
}
TORCH_LIBRARY_IMPL(shrink, CompositeImplicitAutograd, m) { m.impl("tap", &shrink::tap_op); }

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
    case Schedule::kOneShot:
      return target;
    case Schedule::kLinear:
      return target * t;
    case Schedule::kAgp:
      return target * (1.0 - std::pow(1.0 - t, 3.0));
  }
  return target;
}

namespace {

// floor(n * ratio), robust to 0.29 * 100 = 28.999999999999996 (the plugins count alike).
int64_t share_of(int64_t n, double ratio) {
  return static_cast<int64_t>(std::floor(static_cast<double>(n) * ratio + 1e-9));
}

}  // namespace

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
    return a.score < b.score ||
           (a.score == b.score && (a.layer < b.layer || (a.layer == b.layer && a.index < b.index)));
  });
  const int64_t budget = share_of(total, sparsity);
  std::vector<int64_t> pruned(layers.size(), 0);
  int64_t used = 0;
  for (const Unit& u : units) {
    const int64_t size = layers[u.layer].elements_per_unit;
    if (used + size > budget) break;
    used += size;
    ++pruned[u.layer];
  }
  for (std::size_t l = 0; l < layers.size(); ++l)
    pruned[l] = std::min(pruned[l], layers[l].max_prune);
  return pruned;
}

namespace {

torch::jit::Module submodule(const torch::jit::Module& module, const std::string& path) {
  return detail::attribute_at(module, path).toModule();
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
                           std::vector<PruneTarget> targets, torch::jit::Module& module,
                           std::string name)
    : masker_(std::make_unique<MaskerInstance>(algorithm, options)), name_(std::move(name)) {
  const char* supported =
      SHRINK_HAS_FIELD(algorithm.descriptor, shrink_algorithm_descriptor, supported_op_types)
          ? algorithm.descriptor->supported_op_types
          : nullptr;
  for (PruneTarget& t : targets) {
    SHRINK_CHECK(listed(supported, t.op_type), t.where << ": " << name_ << ": plugin '"
                                                       << algorithm.name << "' cannot prune op '"
                                                       << t.op_name << "' of type " << t.op_type
                                                       << " (it handles " << supported << ")");
    MaskedOp op;
    torch::jit::Module m = submodule(module, t.op_name);
    op.weight = m.attr("weight").toTensor();
    if (t.has_bias) op.bias = m.attr("bias").toTensor();
    op.weight_mask = torch::ones_like(op.weight);
    op.target = std::move(t);
    ops_.push_back(std::move(op));
  }
  penalty_ = masker_->l1_penalty();

  // Ops whose channels a residual add joins share one mask (ranked per layer only).
  for (const auto& group : channel_dependency_groups(module)) {
    std::vector<std::size_t> members;
    for (const std::string& name : group) {
      for (std::size_t i = 0; i < ops_.size(); ++i) {
        if (ops_[i].target.op_name == name && !ops_[i].target.global) members.push_back(i);
      }
    }
    if (members.size() > 1) shared_.push_back(members);
  }

  // Convolutions whose output goes only to a BatchNorm: that BatchNorm follows their masks.
  auto graph = detail::inlined_forward(module, detail::ForwardGraph::kCopy);
  const auto paths = detail::attribute_paths(*graph);
  auto path_of = [&](const torch::jit::Value* v) {
    auto it = paths.find(v);
    return it == paths.end() ? std::string() : it->second;
  };
  for (torch::jit::Node* n : detail::all_nodes(graph->block())) {
    torch::jit::Node* bn = detail::batch_norm_after(n).batch_norm;
    if (bn == nullptr) continue;
    const std::string conv_weight = path_of(n->input(1)), bn_weight = path_of(bn->input(1));
    const std::string bn_bias = path_of(bn->input(2));
    if (conv_weight.empty() || bn_weight.empty() || bn_bias.empty()) continue;
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      if (ops_[i].target.op_name + ".weight" != conv_weight) continue;
      const std::string bn_name = bn_weight.substr(0, bn_weight.rfind('.'));
      torch::jit::Module b = submodule(module, bn_name);
      Follower f{i, bn_name, b.attr("weight").toTensor(), b.attr("bias").toTensor(), {}};
      if (f.weight.numel() != ops_[i].weight.size(0)) continue;
      f.mask = torch::ones({f.weight.numel()}, f.weight.options());
      followers_.push_back(std::move(f));
    }
  }
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
      SHRINK_CHECK(scores.defined(), op.target.where
                                         << ": " << name_ << ": plugin '" << algorithm().name
                                         << "' gives no importance scores, so it cannot rank "
                                            "across layers (total_sparsity); use sparse_ratio");
      RankedLayer layer;
      layer.elements_per_unit = op.weight.numel() / std::max<int64_t>(scores.numel(), 1);
      const int64_t units = scores.numel();
      layer.max_prune = std::min<int64_t>(units - 1, share_of(units, op.target.max_sparsity));
      layer.scores = std::move(scores);
      layers.push_back(std::move(layer));
    }
    const double total =
        scheduled_sparsity(kind, ops_[group.second.front()].target.sparsity, update, updates);
    const std::vector<int64_t> pruned = allocate_global(layers, total);
    for (std::size_t k = 0; k < group.second.size(); ++k) {
      const int64_t units = layers[k].scores.numel();
      // Half a unit over: the masker's floor(units * sparsity) is then exactly pruned[k].
      sparsity[group.second[k]] =
          pruned[k] == 0 ? 0.0
                         : (static_cast<double>(pruned[k]) + 0.5) / static_cast<double>(units);
    }
  }
  // Joined ops: one channel mask from their summed scores, at the lowest sparsity any asks for.
  std::vector<char> done(ops_.size(), 0);
  for (const auto& group : shared_) {
    at::Tensor scores;
    double s = 1.0;
    for (std::size_t i : group) {
      at::Tensor own = masker_->importance(wrapper(ops_[i]), static_cast<int>(i));
      if (!own.defined() || own.dim() != 1 || own.size(0) != ops_[i].weight.size(0) ||
          (scores.defined() && scores.size(0) != own.size(0))) {
        scores = at::Tensor();  // not filter scores: each op is pruned on its own
        break;
      }
      scores = scores.defined() ? scores + own.to(at::kDouble) : own.to(at::kDouble);
      s = std::min(s, sparsity[i]);
    }
    if (!scores.defined()) continue;
    const int64_t channels = scores.size(0);
    const int64_t prune = std::min<int64_t>(channels - 1, share_of(channels, s));
    at::Tensor keep = at::ones({channels}, at::kFloat);
    if (prune > 0) {
      const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, 0, /*descending=*/false));
      keep.index_fill_(0, order.narrow(0, 0, prune), 0.0);
    }
    for (std::size_t i : group) {
      MaskedOp& op = ops_[i];
      std::vector<int64_t> shape(static_cast<std::size_t>(op.weight.dim()), 1);
      shape[0] = channels;
      op.weight_mask =
          keep.reshape(shape).expand(op.weight.sizes()).contiguous().to(op.weight.scalar_type());
      op.bias_mask = op.bias.defined() ? keep.to(op.bias.scalar_type()) : at::Tensor();
      done[i] = 1;
    }
  }
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    if (done[i]) continue;
    MaskedOp& op = ops_[i];
    Masks m = masker_->calc_mask(sparsity[i], wrapper(op), static_cast<int>(i));
    op.weight_mask = m.weight_mask.to(op.weight.scalar_type());
    op.bias_mask = m.bias_mask.defined() ? m.bias_mask.to(op.bias.scalar_type()) : at::Tensor();
  }
  check_same_masks();
  apply_masks();
}

// Every rank ranks the same weights (and statistics combined over the ranks), so the masks must
// be the same everywhere; a plugin that ranks on its own rank's data alone would break that.
void PruningStage::check_same_masks() const {
  Communicator& ranks = current_communicator();
  if (!ranks.active()) return;
  std::vector<double> sums;
  std::vector<std::string> names;
  for (const MaskedOp& op : ops_) {
    sums.push_back(checksum(op.weight_mask) +
                   (op.bias_mask.defined() ? checksum(op.bias_mask) : 0.0));
    names.push_back(name_ + ": the mask of " + op.target.op_name);
  }
  ranks.check_same(at::tensor(sums, at::kDouble), names, name_ + " (masks)");
}

void PruningStage::apply_masks() {
  torch::NoGradGuard no_grad;
  for (MaskedOp& op : ops_) {
    op.weight.mul_(op.weight_mask);
    if (op.bias_mask.defined()) op.bias.mul_(op.bias_mask);
  }
  for (Follower& f : followers_) {
    // A channel whose whole filter is masked.
    const at::Tensor& m = ops_[f.leader].weight_mask;
    f.mask = m.reshape({m.size(0), -1}).ne(0).any(1).to(f.weight.scalar_type());
    f.weight.mul_(f.mask);
    f.bias.mul_(f.mask);
  }
}

void PruningStage::mask_gradients() {
  torch::NoGradGuard no_grad;
  for (MaskedOp& op : ops_) {
    if (op.weight.grad().defined()) op.weight.mutable_grad().mul_(op.weight_mask);
    if (op.bias_mask.defined() && op.bias.grad().defined())
      op.bias.mutable_grad().mul_(op.bias_mask);
  }
  for (Follower& f : followers_) {
    if (f.weight.grad().defined()) f.weight.mutable_grad().mul_(f.mask);
    if (f.bias.grad().defined()) f.bias.mutable_grad().mul_(f.mask);
  }
}

void PruningStage::rebind(torch::jit::Module& module, const ChannelRemoval& removal) {
  torch::NoGradGuard no_grad;
  auto resized = [&](const std::string& name) -> const ResizedModule* {
    for (const auto& r : removal.modules) {
      if (r.name == name) return &r;
    }
    return nullptr;
  };
  for (MaskedOp& op : ops_) {
    torch::jit::Module m = submodule(module, op.target.op_name);
    op.weight = m.attr("weight").toTensor();
    if (op.bias.defined()) op.bias = m.attr("bias").toTensor();
    const ResizedModule* r = resized(op.target.op_name);
    if (r == nullptr) continue;
    const at::Tensor out = torch::tensor(r->kept_out, at::kLong);
    op.weight_mask = op.weight_mask.index_select(0, out);
    if (!r->kept_in.empty() && op.weight_mask.dim() > 1) {
      op.weight_mask = op.weight_mask.index_select(1, torch::tensor(r->kept_in, at::kLong));
    }
    if (op.bias_mask.defined()) op.bias_mask = op.bias_mask.index_select(0, out);
    op.weight_mask = op.weight_mask.contiguous();
  }
  for (Follower& f : followers_) {
    torch::jit::Module m = submodule(module, f.op_name);
    f.weight = m.attr("weight").toTensor();
    f.bias = m.attr("bias").toTensor();
  }
  apply_masks();
}

void PruningStage::observe() {
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    WrapperSpec w = wrapper(ops_[i]);
    if (!ops_[i].weight.grad().defined()) continue;
    w.weight_grad = ops_[i].weight.grad().detach();
    if (!taps_.empty()) {
      TapRecords& records = tap_records();
      std::lock_guard<std::mutex> lock(records.mutex);
      at::Tensor& product = records.products[taps_[i]];
      w.output_grad_product = product;
      product = at::Tensor();  // the next step records afresh
    }
    masker_->observe(w, static_cast<int>(i));
  }
}

void PruningStage::tap_outputs(torch::jit::Module& module) {
  // A method that has run keeps its plan: the taps go into a clone, whose methods are new.
  module = module.clone(/*inplace=*/true);  // the same parameters
  const auto graph = module.get_method("forward").graph();
  detail::inline_calls(*graph);
  TapRecords& records = tap_records();
  // Each op's output, or that of the BatchNorm that follows it alone: a pruned filter takes the
  // BatchNorm's channel with it, so that is the feature map whose removal is estimated (and in
  // training a BatchNorm makes the loss blind to its input channel's scale). For a ReLU after it,
  // output * gradient is the same before and after the ReLU.
  std::map<std::string, std::pair<std::size_t, bool>> by_name;  // module -> (op, a follower)
  {
    std::lock_guard<std::mutex> lock(records.mutex);
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      taps_.push_back(records.next++);
      records.products[taps_.back()] = at::Tensor();
      by_name[ops_[i].target.op_name] = {i, false};
    }
  }
  for (const Follower& f : followers_) by_name[f.op_name] = {f.leader, true};
  std::vector<std::vector<torch::jit::Node*>> own(ops_.size()), followed(ops_.size());
  for (torch::jit::Node* node : detail::all_nodes(graph->block())) {
    auto it = by_name.find(detail::scope_of(node));
    if (it == by_name.end()) continue;
    const auto [op, follower] = it->second;
    const auto& kinds = detail::anchor_kinds(follower ? "BatchNorm2d" : ops_[op].target.op_type);
    if (std::find(kinds.begin(), kinds.end(), node->kind().toQualString()) == kinds.end()) continue;
    (follower ? followed : own)[op].push_back(node);
  }
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    const std::vector<torch::jit::Node*>& nodes = followed[i].empty() ? own[i] : followed[i];
    SHRINK_CHECK(!nodes.empty(), ops_[i].target.where
                                     << ": " << name_ << ": plugin '" << algorithm().name
                                     << "' observes outputs, and the output of "
                                     << ops_[i].target.op_name << " (" << ops_[i].target.op_type
                                     << ") was not found in the model's graph");
    const int64_t channel_dim = followed[i].empty() && ops_[i].target.op_type == "Linear" ? -1 : 1;
    for (torch::jit::Node* node : nodes) {
      torch::jit::WithInsertPoint guard(node->next());
      torch::jit::Value* tapped = graph->insert(kTap, {node->output(), taps_[i], channel_dim});
      node->output()->replaceAllUsesAfterNodeWith(tapped->node(), tapped);
    }
  }
}

void PruningStage::untap_outputs(torch::jit::Module& module) {
  if (taps_.empty()) return;
  const auto graph = module.get_method("forward").graph();
  for (torch::jit::Node* node : detail::all_nodes(graph->block())) {
    if (node->kind() != kTap) continue;
    node->output()->replaceAllUsesWith(node->input(0));
    node->destroy();
  }
  module = module.clone(/*inplace=*/true);
  release_taps();
}

void PruningStage::release_taps() {
  TapRecords& records = tap_records();
  std::lock_guard<std::mutex> lock(records.mutex);
  for (int64_t tap : taps_) records.products.erase(tap);
  taps_.clear();
}

PruningStage::~PruningStage() { release_taps(); }

at::Tensor PruningStage::penalty() {
  if (penalty_ == 0.0 || ops_.empty()) return {};
  at::Tensor sum = ops_.front().weight.abs().sum();
  for (std::size_t i = 1; i < ops_.size(); ++i) sum = sum + ops_[i].weight.abs().sum();
  return sum * penalty_;
}

}  // namespace shrink
