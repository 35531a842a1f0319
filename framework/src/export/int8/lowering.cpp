#include "export/int8/lowering.hpp"

#include <shrink/core/error.hpp>

#include "export/int8/rule_table.hpp"
#include "graph/graph_utils.hpp"

#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <cmath>

namespace shrink::int8 {
namespace {

using detail::is;
using detail::sym;
using torch::jit::Node;
using torch::jit::Value;

// Activations are quantized by this method of the model (inlined into forward at the end):
// ATen's quantize_per_tensor is a scalar loop on this machine, so large tensors take a vectorised
// path of five ops; small ones keep the one op, cheaper there. docs/results.md has the timings.
constexpr const char* kQuantizeMethod = "shrink_quantize_activation";
constexpr const char* kQuantizeSource = R"(
def shrink_quantize_activation(self, x: Tensor, scale: float, inv_scale: float, zero_point: int):
    if x.numel() > 16384:
        q = torch.clamp(torch.round(x * inv_scale) + zero_point, 0, 255).to(dtype=0)  # uint8
        return torch._make_per_tensor_quantized_tensor(q, scale, zero_point)
    return torch.quantize_per_tensor(x, scale, zero_point, 13)  # quint8
)";

// LibTorch's int8 cat takes a fast path (a copy where the parameters agree) only when every input
// is a 4-D channels-last tensor, as int8 convolutions make them; a chunk of a reshaped tensor is
// not. Made so first (a copy of bytes), and left as it is when it already is.
constexpr const char* kChannelsLastMethod = "shrink_channels_last";
constexpr const char* kChannelsLastSource = R"(
def shrink_channels_last(self, x: Tensor):
    if x.dim() == 4:
        return x.contiguous(memory_format=2)  # torch.channels_last
    return x
)";

}  // namespace

Lowering::Lowering(torch::jit::Module& module, std::string file, const RuleTable& rules,
                   std::set<std::string> keep_float)
    : module_(module), file_(std::move(file)), rules_(rules), keep_float_(std::move(keep_float)) {
  // Evaluation only: `training` reads become false and their branches go (with those of the
  // model's other flags).
  graph_ = detail::inlined_forward(module_, detail::ForwardGraph::kOwn, /*for_evaluation=*/true);
  detail::snapshot_appended_lists(*graph_);  // densenet's cats read their inputs directly
  paths_ = detail::attribute_paths(*graph_);
  names_ = detail::node_names(*graph_);
}

std::string Lowering::describe(const Node* n) const { return detail::describe_node(n, names_); }

Int8Export Lowering::run() {
  define_methods();
  walk();
  destroy_retired();
  shape_queries_read_twins();
  torch::jit::EliminateDeadCode(graph_);
  report_float_ops();
  collect_regions();
  fold_lone_quantizes();
  torch::jit::EliminateDeadCode(graph_);
  detail::inline_calls(*graph_);  // the methods defined above
  // A model with fake-quant sites left (weights of ops that stayed float, say) keeps them.
  return result_;
}

void Lowering::define_methods() {
  module_.define(kQuantizeSource);
  module_.define(kChannelsLastSource);
}

void Lowering::walk() {
  // The nodes as they were: rules insert nodes, and retire ones the walk has not reached yet.
  const std::vector<Node*> order(graph_->nodes().begin(), graph_->nodes().end());
  for (Node* n : order) {
    if (dead_.count(n)) continue;
    const Rule rule = rules_.find(n->kind());
    if (rule == nullptr) continue;
    const Needs* needs = rules_.needs(n->kind());
    if (needs->kind != Needs::kNothing && keep_float_.count(describe(n))) {
      float_on_purpose(n, describe(n) + ": left float, faster than int8 here");
      continue;
    }
    rule_regions_.clear();
    rule(*this, n);
  }
}

int Lowering::region_root(int r) {
  while (region_parent_[r] != r) r = region_parent_[r] = region_parent_[region_parent_[r]];
  return r;
}

// The int8 ops, grouped by region in graph order.
void Lowering::collect_regions() {
  std::map<int, std::size_t> index;  // root -> position in result_.regions
  for (const auto& [region, op] : op_regions_) {
    const int root = region_root(region);
    auto [it, added] = index.emplace(root, result_.regions.size());
    if (added) result_.regions.emplace_back();
    result_.regions[it->second].ops.push_back(op);
  }
}

void Lowering::count_quantized_op(const Node* n) {
  ++result_.quantized_ops;
  result_.int8_ops.push_back(describe(n));
  SHRINK_CHECK(!rule_regions_.empty(),
               file_ << ": int8 export: internal error, " << describe(n) << " joins no region");
  op_regions_.emplace_back(rule_regions_.front(), describe(n));
}

void Lowering::destroy_retired() {
  for (auto it = dead_order_.rbegin(); it != dead_order_.rend(); ++it) {
    for (Value* out : (*it)->outputs()) {
      SHRINK_CHECK(!out->hasUses(),
                   file_ << ": int8 export: internal error, " << describe(*it) << " is still used");
    }
    (*it)->destroy();
  }
}

void Lowering::shape_queries_read_twins() {
  // Shape queries, sub-blocks included (BatchNorm's input check), read the quantized tensor: a
  // dequantize kept alive only for them cost as much as a convolution.
  for (Node* n : detail::all_nodes(graph_->block())) {
    if ((is(n, "aten::dim") || is(n, "aten::size")) &&
        is(n->input(0)->node(), "aten::dequantize")) {
      n->replaceInput(0, n->input(0)->node()->input(0));
    }
  }
}

// Every op left reading a dequantized value runs in float: say which.
void Lowering::report_float_ops() {
  for (Node* n : graph_->nodes()) {
    if (!n->kind().is_aten() || is(n, "aten::dequantize") || is(n, "aten::quantize_per_tensor") ||
        is(n, "aten::quantize_per_channel") || is(n, "aten::numel") || is(n, "aten::dim") ||
        is(n, "aten::size")) {  // shape queries read no data
      continue;
    }
    auto reason = float_reasons_.find(n);
    if (reason != float_reasons_.end()) {
      result_.float_ops.push_back(reason->second);
      continue;
    }
    for (Value* in : n->inputs()) {
      if (is(in->node(), "aten::dequantize")) {
        result_.float_ops.push_back(describe(n) + ": no int8 lowering for it; runs in float");
        break;
      }
    }
  }
}

// A quantize whose only reader is a dequantize (the output site of an op that stays float, the
// last classifier say) is one fake-quant: one kernel instead of two and a branch.
void Lowering::fold_lone_quantizes() {
  for (Node* dq : detail::all_nodes(graph_->block())) {
    Node* call = dq->inputs().empty() ? nullptr : dq->input(0)->node();
    if (!is(dq, "aten::dequantize") || call->kind() != c10::prim::CallMethod ||
        call->s(c10::attr::name) != kQuantizeMethod || call->output()->uses().size() != 1) {
      continue;
    }
    torch::jit::WithInsertPoint guard(dq);
    Value* fq =
        graph_->insert(sym(kFakeQuantPerTensor),
                       {call->input(1), call->input(2), call->input(4), int64_t{0}, int64_t{255}});
    dq->output()->replaceAllUsesWith(fq);
  }
}

const Twin* Lowering::twin(const Value* f) {
  auto it = twins_.find(f);
  if (it == twins_.end()) return nullptr;
  rule_regions_.push_back(it->second.region);
  return &it->second;
}

Value* Lowering::set_twin(Value* replaced, Value* q, QParams p) {
  Node* dq = graph_->create(sym("aten::dequantize"), {q});
  dq->insertAfter(q->node());
  replaced->replaceAllUsesWith(dq->output());
  // The region of the twins the rule read, joined; a new one where it read none (a quantize).
  if (rule_regions_.empty()) {
    rule_regions_.push_back(static_cast<int>(region_parent_.size()));
    region_parent_.push_back(rule_regions_.back());
  }
  const int region = region_root(rule_regions_.front());
  for (int r : rule_regions_) region_parent_[region_root(r)] = region;
  twins_[dq->output()] = {q, p, region};
  return dq->output();
}

Value* Lowering::quantize(Value* x, QParams p) {
  // inv_scale as ATen's quantize kernel computes it (1 / scale in float), so that the fast path
  // rounds exactly as quantize_per_tensor does.
  const double inv_scale = static_cast<double>(1.0f / static_cast<float>(p.scale));
  Node* call = graph_->insertNode(
      graph_->create(c10::prim::CallMethod,
                     {graph_->inputs().at(0), x, graph_->insertConstant(p.scale),
                      graph_->insertConstant(inv_scale), graph_->insertConstant(p.zero_point)}));
  call->s_(c10::attr::name, kQuantizeMethod);
  call->output()->setType(c10::TensorType::get());
  return call->output();
}

Value* Lowering::channels_last(Value* q) {
  Node* call =
      graph_->insertNode(graph_->create(c10::prim::CallMethod, {graph_->inputs().at(0), q}));
  call->s_(c10::attr::name, kChannelsLastMethod);
  call->output()->setType(c10::TensorType::get());
  return call->output();
}

QParams Lowering::activation_params(const Node* n, const FakeQuant& f) const {
  SHRINK_CHECK(!f.per_channel, file_ << ": int8 export: " << describe(n)
                                     << " quantizes an activation per channel; int8 kernels "
                                        "take per-tensor activations");
  const int64_t levels = f.qmax - f.qmin;
  SHRINK_CHECK(levels == 254 || levels == 255 || levels == 126 || levels == 127,
               file_ << ": int8 export: " << describe(n) << " is a "
                     << std::llround(std::log2(levels + 1)) << "-bit site (integer range ["
                     << f.qmin << ", " << f.qmax << "]); LibTorch's int8 kernels need 8-bit sites");
  // [-127, 127] and [-128, 127] (and reduced [-63, 63]) shift into quint8's [0, 255]; [0, 255]
  // (and [0, 127]) is quint8 already; the kernels then saturate at quint8's limits.
  const int64_t shift = f.qmin < 0 ? 128 : 0;
  return {f.scale, f.zero_point + shift};
}

void Lowering::retire(const std::vector<Node*>& nodes, Value* f) {
  const std::set<Node*> group(nodes.begin(), nodes.end());
  for (Node* n : nodes) {
    for (Value* out : n->outputs()) {
      const auto uses = out->uses();
      for (const auto& u : uses) {
        if (!group.count(u.user)) u.user->replaceInput(u.offset, f);
      }
    }
  }
  for (Node* n : nodes) kill(n);
}

void Lowering::kill(Node* n) {
  if (dead_.insert(n).second) dead_order_.push_back(n);
}

std::size_t Lowering::live_uses(const Value* v) const {
  std::size_t count = 0;
  for (const auto& u : v->uses()) count += dead_.count(u.user) == 0 ? 1 : 0;
  return count;
}

bool Lowering::is_weight(const Value* v) const { return paths_.count(v) != 0; }

const std::string& Lowering::weight_path(const Value* v) const { return paths_.at(v); }

at::Tensor Lowering::attribute(const Value* v) const {
  const c10::IValue value = detail::attribute_at(module_, paths_.at(v));
  return value.isTensor() ? value.toTensor() : at::Tensor();
}

std::optional<int64_t> Lowering::channels(const Value* q) const {
  auto it = channels_.find(q);
  return it == channels_.end() ? std::nullopt : std::optional<int64_t>(it->second);
}

void Lowering::set_channels(const Value* q, int64_t channels) { channels_[q] = channels; }

void Lowering::float_on_purpose(const Node* n, std::string reason) {
  float_reasons_[n] = std::move(reason);
}

}  // namespace shrink::int8
