#include "export/int8/rules/fused_output.hpp"

#include "export/int8/lowering.hpp"
#include "graph/graph_utils.hpp"

namespace shrink::int8 {

bool fuse_output(Lowering& lowering, torch::jit::Node* n,
                 const std::vector<torch::jit::Value*>& inputs, const char* op,
                 const char* op_relu) {
  using detail::only_use;
  torch::jit::Node* relu = op_relu ? only_use(n->output(), {"aten::relu", "aten::relu_"}) : nullptr;
  torch::jit::Node* f = relu ? only_use(relu->output(), {kFakeQuantPerTensor}) : nullptr;
  if (f == nullptr) {  // no relu, or one not followed by a fake-quant: the op alone
    relu = nullptr;
    f = only_use(n->output(), {kFakeQuantPerTensor});
  }
  const std::optional<FakeQuant> after = f ? fake_quant_of(f) : std::nullopt;
  if (!after) return false;
  const QParams p = lowering.activation_params(f, *after);
  torch::jit::WithInsertPoint guard(n);
  std::vector<torch::jit::NamedValue> args(inputs.begin(), inputs.end());
  args.emplace_back(p.scale);
  args.emplace_back(p.zero_point);
  torch::jit::Value* q = lowering.graph().insert(detail::sym(relu ? op_relu : op), args);
  std::vector<torch::jit::Node*> replaced = {n, f};
  if (relu) replaced.insert(replaced.begin() + 1, relu);
  lowering.retire(replaced, lowering.set_twin(f->output(), q, p));
  lowering.count_quantized_op(n);
  return true;
}

}  // namespace shrink::int8
