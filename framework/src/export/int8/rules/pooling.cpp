// Max, average and adaptive average pooling run on the quantized tensor, with its parameters.
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/rules.hpp"
#include "export/int8/rules/value_op.hpp"

namespace shrink::int8 {
namespace {

void lower_pooling(Lowering& lowering, torch::jit::Node* n) {
  lower_on_twin(lowering, n, Channels::kKept);
}

}  // namespace

void add_pooling_rules(RuleTable& table) {
  for (const char* kind : {"aten::max_pool2d", "aten::avg_pool2d", "aten::adaptive_avg_pool2d"}) {
    table.add(kind, lower_pooling, {Needs::kSameGrid});
  }
}

}  // namespace shrink::int8
