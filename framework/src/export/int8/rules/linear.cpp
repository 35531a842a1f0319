// linear whose input is quantized and whose weight is fake-quantized  ->  quantized::linear, or
// linear_relu with the ReLU after it fused, its output quantized as the fake-quant after it says.
// A small linear stays float; one reading a flattened int8 convolution output reads it in
// channels-last order.
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/rules.hpp"
#include "export/int8/rules/weighted.hpp"
#include "graph/graph_utils.hpp"

#include <torch/csrc/jit/ir/constants.h>

#include <utility>

namespace shrink::int8 {
namespace {

using detail::is;
using detail::sym;
using torch::jit::Node;
using torch::jit::Value;

// Below this many weights a linear runs in float: oneDNN's int8 linear has a fixed cost per call
// larger than a small linear's whole fp32 work, at batch 1 and 64 alike (docs/results.md).
constexpr int64_t kSmallLinearWeights = 16384;

// A small linear runs in float on the weights as the fake-quant model quantized them, so that it
// computes the same.
void keep_small_linear_float(Lowering& lowering, Node* n, const WeightedOperands& op) {
  torch::jit::WithInsertPoint guard(n);
  n->replaceInput(1, lowering.graph().insertConstant(fake_quantized(op.weight, op.weight_fq)));
  lowering.float_on_purpose(n, op.name + ": runs in float, faster than oneDNN's int8 linear at " +
                                   std::to_string(op.weight.numel()) + " weights (fewer than " +
                                   std::to_string(kSmallLinearWeights) +
                                   "), on its fake-quantized weights");
}

// Whether `flat` (reshape or flatten) makes a 2-D value.
bool flattens_to_rows(const Node* flat) {
  if (is(flat, "aten::reshape")) {
    const Node* list = flat->input(1)->node();
    auto shape = torch::jit::toIValue(flat->input(1));
    return shape ? shape->isIntList() && shape->toIntList().size() == 2
                 : list->kind() == c10::prim::ListConstruct && list->inputs().size() == 2;
  }
  if (is(flat, "aten::flatten")) {
    return torch::jit::constant_as<int64_t>(flat->input(1)) == int64_t{1} &&
           torch::jit::constant_as<int64_t>(flat->input(2)) == int64_t{-1};
  }
  return false;
}

// A linear's input `f` that flattens a quantized NCHW activation with C channels to rows of K:
// oneDNN's activations are channels-last, so flattening them in (c, h, w) order copies.
// reshape(x, [-1, C, K / C]).transpose(1, 2).reshape([-1, K]) flattens in (h, w, c) order
// instead, a view of a channels-last x, and the linear's weight columns are reordered the same
// way: exact whatever x's layout (it reorders any K-wide rows alike), copy-free on
// channels-last. Returns that flattened value and C, or nothing when the pattern is not there.
std::optional<std::pair<Value*, int64_t>> flatten_channels_last(Lowering& lowering, Value* f,
                                                                int64_t k,
                                                                const FakeQuant& weight_fq) {
  const Twin* t = lowering.twin(f);
  if ((weight_fq.per_channel && weight_fq.axis != 0) || t == nullptr ||
      lowering.live_uses(f) != 1 || lowering.live_uses(t->q) != 1) {
    return std::nullopt;  // a per-input-channel weight, or the flattened value read elsewhere
  }
  Node* flat = t->q->node();
  const std::optional<int64_t> c =
      flattens_to_rows(flat) ? lowering.channels(flat->input(0)) : std::nullopt;
  if (!c || *c < 1 || k % *c != 0 || k / *c < 2) return std::nullopt;
  torch::jit::Graph& graph = lowering.graph();
  torch::jit::WithInsertPoint guard(flat);
  Value* grouped =
      graph.insert(sym("aten::reshape"),
                   {flat->input(0), graph.insertConstant(std::vector<int64_t>{-1, *c, k / *c})});
  Value* inner = graph.insert(sym("aten::transpose"), {grouped, int64_t{1}, int64_t{2}});
  Value* rows = graph.insert(sym("aten::reshape"),
                             {inner, graph.insertConstant(std::vector<int64_t>{-1, k})});
  return std::make_pair(rows, *c);
}

// A small linear left without a weight site (as the int8_onednn preset leaves it) reading an int8
// value: float on purpose, and said so.
void note_small_float_linear(Lowering& lowering, const Node* n) {
  if (lowering.twin(n->input(0)) == nullptr || !lowering.is_weight(n->input(1))) return;
  const at::Tensor w = lowering.attribute(n->input(1));
  if (!w.defined() || w.numel() >= kSmallLinearWeights) return;
  lowering.float_on_purpose(n, lowering.describe(n) +
                                   ": runs in float, faster than oneDNN's int8 "
                                   "linear at " +
                                   std::to_string(w.numel()) + " weights (fewer than " +
                                   std::to_string(kSmallLinearWeights) + ")");
}

void lower_linear(Lowering& lowering, Node* n) {
  const std::optional<WeightedOperands> op = weighted_operands(lowering, n);
  if (!op) return note_small_float_linear(lowering, n);
  if (op->weight.numel() < kSmallLinearWeights) {
    keep_small_linear_float(lowering, n, *op);
    return;
  }
  const std::optional<FusedChain> chain = fused_chain(lowering, n, op->name);
  if (!chain) return;
  at::Tensor w = op->weight;
  Value* x = op->input.q;
  if (auto reordered = flatten_channels_last(lowering, n->input(0), w.size(1), op->weight_fq)) {
    const int64_t c = reordered->second;
    x = reordered->first;
    w = w.reshape({w.size(0), c, -1}).transpose(1, 2).reshape({w.size(0), -1}).contiguous();
    lowering.note(op->name + ": flattens its channels-last input without a copy (" +
                  std::to_string(c) + " channels innermost; weight columns reordered to match)");
  }
  const std::optional<Int8Weight> int8 = int8_weight(lowering, n, *op, w, nullptr);
  if (!int8) return;
  torch::jit::Graph& graph = lowering.graph();
  torch::jit::WithInsertPoint guard(n);
  const Int8WeightValues values = insert_int8_weight(graph, *int8);
  Value* packed = graph.insert(sym("quantized::linear_prepack"), {values.weight, values.bias});
  Value* q = graph.insert(sym(chain->relu ? "quantized::linear_relu" : "quantized::linear"),
                          {x, packed, chain->out.scale, chain->out.zero_point});
  replace_with_int8(lowering, n, *chain, q);
}

}  // namespace

void add_linear_rules(RuleTable& table) {
  Needs needs{Needs::kWeighted};
  needs.fuses_relu = true;
  needs.min_weights = kSmallLinearWeights;
  table.add("aten::linear", lower_linear, needs);
}

}  // namespace shrink::int8
