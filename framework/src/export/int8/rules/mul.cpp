// mul(a, b) [relu] fake-quant  ->  quantized::mul[_relu](qa, qb, scale, zero_point), broadcasting
// as mul does (a squeeze-excitation's per-channel scale); and silu(a) fake-quant  ->
// quantized::mul(qa, sigmoid(qa), ...), SiLU being a * sigmoid(a), its sigmoid on the int8
// kernel's fixed grid (rules/sigmoid.cpp).
#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/fused_output.hpp"
#include "export/int8/rules/rules.hpp"
#include "graph/graph_utils.hpp"

namespace shrink::int8 {
namespace {

void lower_mul(Lowering& lowering, torch::jit::Node* n) {
  if (n->inputs().size() != 2) return;
  const Twin* a = lowering.twin(n->input(0));
  const Twin* b = lowering.twin(n->input(1));
  if (a == nullptr || b == nullptr) return;  // a scalar factor, or a float operand
  fuse_output(lowering, n, {a->q, b->q}, "quantized::mul", "quantized::mul_relu");
}

void lower_silu(Lowering& lowering, torch::jit::Node* n) {
  const Twin* a = lowering.twin(n->input(0));
  if (a == nullptr || detail::only_use(n->output(), {kFakeQuantPerTensor}) == nullptr) return;
  torch::jit::WithInsertPoint guard(n);
  torch::jit::Value* s = lowering.graph().insert(detail::sym("aten::sigmoid"), {a->q});
  fuse_output(lowering, n, {a->q, s}, "quantized::mul");
}

}  // namespace

void add_mul_rules(RuleTable& table) {
  Needs mul{Needs::kOwnOutput};
  mul.fuses_relu = true;
  mul.tensor_inputs = 2;
  table.add("aten::mul", lower_mul, mul);
  table.add("aten::mul_", lower_mul, mul);
  Needs silu{Needs::kOwnOutput};
  silu.tensor_inputs = 1;
  table.add("aten::silu", lower_silu, silu);
  table.add("aten::silu_", lower_silu, silu);
}

}  // namespace shrink::int8
