// chunk and split of a quantized tensor, unpacked (x1, x2 = x.chunk(2, 1)): the same call on the
// quantized tensor, each piece the twin of the float piece, with the input's parameters.
#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/rules.hpp"
#include "graph/graph_utils.hpp"

namespace shrink::int8 {
namespace {

void lower_chunk(Lowering& lowering, torch::jit::Node* n) {
  const Twin* in = lowering.twin(n->input(0));
  const auto& uses = n->output()->uses();
  if (in == nullptr || uses.size() != 1 || uses[0].user->kind() != c10::prim::ListUnpack) return;
  const Twin twin = *in;
  torch::jit::Node* unpack = uses[0].user;
  torch::jit::Graph& graph = lowering.graph();
  torch::jit::Node* copy = graph.createClone(n, [](torch::jit::Value* v) { return v; });
  copy->replaceInput(0, twin.q);
  copy->insertBefore(n);
  torch::jit::Node* pieces = graph.createListUnpack(copy->output(), unpack->outputs().size());
  pieces->insertAfter(copy);
  for (std::size_t i = 0; i < unpack->outputs().size(); ++i) {
    lowering.set_twin(unpack->output(i), pieces->output(i), twin.p);
  }
  lowering.kill(n);
  lowering.kill(unpack);
}

}  // namespace

void add_chunk_rules(RuleTable& table) {
  for (const char* kind : {"aten::chunk", "aten::split", "aten::split_with_sizes"}) {
    table.add(kind, lower_chunk, {Needs::kSameGrid});
  }
}

}  // namespace shrink::int8
