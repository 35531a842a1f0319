// A ReLU (or hardtanh) that no convolution or linear fused runs on the quantized tensor, with its
// parameters: its range was already that of the fake-quant before it.
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/rules.hpp"
#include "export/int8/rules/value_op.hpp"

namespace shrink::int8 {
namespace {

void lower_relu(Lowering& lowering, torch::jit::Node* n) {
  lower_on_twin(lowering, n, Channels::kKept);
}

}  // namespace

void add_relu_rules(RuleTable& table) {
  for (const char* kind : {"aten::relu", "aten::relu_", "aten::hardtanh", "aten::hardtanh_"}) {
    table.add(kind, lower_relu, {Needs::kSameGrid});
  }
}

}  // namespace shrink::int8
