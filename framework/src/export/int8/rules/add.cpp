// add(a, b) [relu] fake-quant  ->  quantized::add[_relu](qa, qb, scale, zero_point): residual
// adds of two quantized values.
#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/fused_output.hpp"
#include "export/int8/rules/rules.hpp"

#include <torch/csrc/jit/ir/constants.h>

namespace shrink::int8 {
namespace {

void lower_add(Lowering& lowering, torch::jit::Node* n) {
  if (n->inputs().size() != 3) return;  // add(Tensor, Tensor, alpha), not add(Scalar, ...)
  const Twin* a = lowering.twin(n->input(0));
  const Twin* b = lowering.twin(n->input(1));
  const auto alpha = torch::jit::constant_as<int64_t>(n->input(2));
  if (a == nullptr || b == nullptr || alpha != int64_t{1}) return;
  fuse_output(lowering, n, {a->q, b->q}, "quantized::add", "quantized::add_relu");
}

}  // namespace

void add_add_rules(RuleTable& table) {
  Needs needs{Needs::kOwnOutput};
  needs.fuses_relu = true;
  needs.tensor_inputs = 2;
  table.add("aten::add", lower_add, needs);
  table.add("aten::add_", lower_add, needs);
}

}  // namespace shrink::int8
