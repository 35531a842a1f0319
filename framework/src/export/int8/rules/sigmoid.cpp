// sigmoid and hardsigmoid on a quantized tensor: LibTorch's int8 kernels give their output on a
// fixed grid (scale 1/256, zero point 0: [0, 1) in 256 steps), whatever the input's. Only where an
// int8 mul reads it (a squeeze-excitation's gate): a sigmoid that ends the model, or whose output
// is fake-quantized to a range of its own, keeps float's precision (the grid saturates at 255/256
// and rounds small values to 0, which the fake-quant model never computed).
#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/rules.hpp"
#include "export/int8/rules/value_op.hpp"
#include "graph/graph_utils.hpp"

#include <string>

namespace shrink::int8 {
namespace {

// Whether every use of `v` is one mul, as either operand (x * gate(x) or gate * x).
bool read_by_one_mul(const torch::jit::Value* v) {
  const auto& uses = v->uses();
  return uses.size() == 1 &&
         (detail::is(uses[0].user, "aten::mul") || detail::is(uses[0].user, "aten::mul_"));
}

void lower_sigmoid(Lowering& lowering, torch::jit::Node* n) {
  const bool in_place = std::string(n->kind().toQualString()).back() == '_';
  // x.sigmoid_() as a statement: later reads of x see the mutation, not this node's output.
  if (!read_by_one_mul(n->output()) || (in_place && n->input(0)->uses().size() != 1)) return;
  const Twin* in = lowering.twin(n->input(0));
  if (in == nullptr) return;
  // In place on a dequantized copy: out of place on the quantized tensor.
  torch::jit::Value* q = same_op_on(lowering.graph(), n, in->q);
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
