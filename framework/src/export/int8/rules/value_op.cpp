#include "export/int8/rules/value_op.hpp"

#include "export/int8/lowering.hpp"
#include "graph/graph_utils.hpp"

namespace shrink::int8 {

// `n` computed on `q` at n's place: the same call (keyword-only arguments included), or the
// out-of-place op of an in-place one. view becomes reshape: int8 activations from oneDNN are
// channels-last, which view cannot flatten; reshape copies where it must.
torch::jit::Value* same_op_on(torch::jit::Graph& graph, torch::jit::Node* n, torch::jit::Value* q) {
  std::string kind = n->kind().toQualString();
  if (kind != "aten::view" && kind.back() != '_') {
    torch::jit::Node* copy = graph.createClone(n, [](torch::jit::Value* v) { return v; });
    copy->replaceInput(0, q);
    copy->insertBefore(n);
    return copy->output();
  }
  if (kind == "aten::view") kind = "aten::reshape";
  if (kind.back() == '_') kind.pop_back();
  std::vector<torch::jit::NamedValue> args;
  args.emplace_back(q);
  for (std::size_t i = 1; i < n->inputs().size(); ++i) args.emplace_back(n->input(i));
  torch::jit::WithInsertPoint guard(n);
  return graph.insert(detail::sym(kind.c_str()), args);
}

void lower_on_twin(Lowering& lowering, torch::jit::Node* n, Channels channels) {
  const Twin* in = n->outputs().size() == 1 ? lowering.twin(n->input(0)) : nullptr;
  if (in == nullptr) return;
  const Twin twin = *in;
  torch::jit::Value* q = same_op_on(lowering.graph(), n, twin.q);
  const std::optional<int64_t> c = lowering.channels(twin.q);
  if (c && channels == Channels::kKept) lowering.set_channels(q, *c);
  lowering.set_twin(n->output(), q, twin.p);
  lowering.kill(n);
}

}  // namespace shrink::int8
