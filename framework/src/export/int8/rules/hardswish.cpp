// hardswish(a) fake-quant  ->  quantized::hardswish(qa, scale, zero_point).
#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/fused_output.hpp"
#include "export/int8/rules/rules.hpp"

namespace shrink::int8 {
namespace {

void lower_hardswish(Lowering& lowering, torch::jit::Node* n) {
  const Twin* a = lowering.twin(n->input(0));
  if (a != nullptr) fuse_output(lowering, n, {a->q}, "quantized::hardswish");
}

}  // namespace

void add_hardswish_rules(RuleTable& table) {
  Needs needs{Needs::kOwnOutput};
  needs.tensor_inputs = 1;
  table.add("aten::hardswish", lower_hardswish, needs);
  table.add("aten::hardswish_", lower_hardswish, needs);
}

}  // namespace shrink::int8
