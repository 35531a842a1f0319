// Reshapes and other layout ops run on the quantized tensor, with its parameters.
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/rules.hpp"
#include "export/int8/rules/value_op.hpp"

namespace shrink::int8 {
namespace {

void lower_reshape(Lowering& lowering, torch::jit::Node* n) {
  lower_on_twin(lowering, n, Channels::kMoved);
}

// contiguous changes the memory layout only: the channels stay dim 1.
void lower_contiguous(Lowering& lowering, torch::jit::Node* n) {
  lower_on_twin(lowering, n, Channels::kKept);
}

}  // namespace

void add_reshape_rules(RuleTable& table) {
  for (const char* kind : {"aten::reshape", "aten::view", "aten::flatten", "aten::transpose",
                           "aten::permute", "aten::squeeze", "aten::unsqueeze"}) {
    table.add(kind, lower_reshape, {Needs::kSameGrid});
  }
  table.add("aten::contiguous", lower_contiguous, {Needs::kSameGrid});
}

}  // namespace shrink::int8
