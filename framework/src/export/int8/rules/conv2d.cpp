// conv2d whose input is quantized and whose weight is fake-quantized  ->  quantized::conv2d, or
// conv2d_relu with the ReLU after it fused, the BatchNorm after it folded into its weight and
// bias, its output quantized as the last fake-quant after them says.
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/rules.hpp"
#include "export/int8/rules/weighted.hpp"
#include "graph/graph_utils.hpp"

namespace shrink::int8 {
namespace {

void lower_conv2d(Lowering& lowering, torch::jit::Node* n) {
  const std::optional<WeightedOperands> op = weighted_operands(lowering, n);
  if (!op) return;
  const std::optional<FusedChain> chain = fused_chain(lowering, n, op->name);
  if (!chain) return;
  const std::optional<Int8Weight> w = int8_weight(lowering, n, *op, op->weight, chain->batch_norm);
  if (!w) return;
  torch::jit::Graph& graph = lowering.graph();
  torch::jit::WithInsertPoint guard(n);
  const Int8WeightValues values = insert_int8_weight(graph, *w);
  // conv2d(input, weight, bias, stride, padding, dilation, groups)
  torch::jit::Value* packed = graph.insert(
      detail::sym("quantized::conv2d_prepack"),
      {values.weight, values.bias, n->input(3), n->input(4), n->input(5), n->input(6)});
  torch::jit::Value* q =
      graph.insert(detail::sym(chain->relu ? "quantized::conv2d_relu" : "quantized::conv2d"),
                   {op->input.q, packed, chain->out.scale, chain->out.zero_point});
  lowering.set_channels(q, w->channels);
  replace_with_int8(lowering, n, *chain, q);
}

}  // namespace

void add_conv2d_rules(RuleTable& table) {
  Needs needs{Needs::kWeighted};
  needs.fuses_batch_norm = true;
  needs.fuses_relu = true;
  table.add("aten::conv2d", lower_conv2d, needs);
}

}  // namespace shrink::int8
