// cat([a, b, ...], dim) fake-quant  ->  quantized::cat([qa, qb, ...], dim, scale, zero_point):
// concatenations of quantized values, re-quantized to the output's parameters.
#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/fused_output.hpp"
#include "export/int8/rules/rules.hpp"
#include "graph/graph_utils.hpp"

namespace shrink::int8 {
namespace {

void lower_cat(Lowering& lowering, torch::jit::Node* n) {
  torch::jit::Node* list = n->input(0)->node();
  if (list->kind() != c10::prim::ListConstruct || n->input(0)->uses().size() != 1) return;
  std::vector<torch::jit::Value*> qs;
  for (torch::jit::Value* v : list->inputs()) {
    const Twin* twin = lowering.twin(v);
    if (twin == nullptr) return;
    qs.push_back(twin->q);
  }
  // The quantized list (and channels-last copies) only made when the quantized cat will be.
  const torch::jit::Node* after = detail::only_use(n->output(), {kFakeQuantPerTensor});
  if (after == nullptr || !fake_quant_of(after)) return;
  torch::jit::Graph& graph = lowering.graph();
  torch::jit::WithInsertPoint guard(n);
  // An int8 convolution's output is channels-last already; a chunk's piece is made so.
  for (torch::jit::Value*& q : qs) {
    if (q->node()->kind() == c10::prim::ListUnpack) q = lowering.channels_last(q);
  }
  torch::jit::Value* qlist = graph.insertNode(graph.createList(qs[0]->type(), qs))->output();
  fuse_output(lowering, n, {qlist, n->input(1)}, "quantized::cat");
}

}  // namespace

void add_cat_rules(RuleTable& table) {
  Needs needs{Needs::kOwnOutput};
  needs.shares_range = true;  // LibTorch's int8 cat copies inputs on the output's range
  table.add("aten::cat", lower_cat, needs);
}

}  // namespace shrink::int8
