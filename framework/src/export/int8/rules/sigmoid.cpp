// sigmoid and hardsigmoid on a quantized tensor: LibTorch's int8 kernels give their output on a
// fixed grid (scale 1/256, zero point 0: [0, 1) in 256 steps), whatever the input's; a fake-quant
// after them, if any, requantizes.
#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/rules.hpp"
#include "graph/graph_utils.hpp"

namespace shrink::int8 {
namespace {

void lower_sigmoid(Lowering& lowering, torch::jit::Node* n) {
  const Twin* in = lowering.twin(n->input(0));
  if (in == nullptr) return;
  std::string kind = n->kind().toQualString();
  if (kind.back() == '_') kind.pop_back();  // in place on a dequantized copy: out of place here
  torch::jit::WithInsertPoint guard(n);
  torch::jit::Value* q = lowering.graph().insert(detail::sym(kind.c_str()), {in->q});
  lowering.set_twin(n->output(), q, kFixedUnitGrid);
  lowering.kill(n);
  lowering.count_quantized_op(n);
}

}  // namespace

void add_sigmoid_rules(RuleTable& table) {
  for (const char* kind :
       {"aten::sigmoid", "aten::sigmoid_", "aten::hardsigmoid", "aten::hardsigmoid_"}) {
    table.add(kind, lower_sigmoid, {Needs::kFixedOutput});
  }
}

}  // namespace shrink::int8
