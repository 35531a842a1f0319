// Dropout in evaluation is the identity: its output is its input's twin.
#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/rules.hpp"

namespace shrink::int8 {
namespace {

void lower_dropout(Lowering& lowering, torch::jit::Node* n) {
  const Twin* in = n->outputs().size() == 1 ? lowering.twin(n->input(0)) : nullptr;
  if (in == nullptr) return;
  const Twin twin = *in;
  lowering.set_twin(n->output(), twin.q, twin.p);
  lowering.kill(n);
}

}  // namespace

void add_dropout_rules(RuleTable& table) {
  table.add("aten::dropout", lower_dropout, {Needs::kSameGrid});
  table.add("aten::dropout_", lower_dropout, {Needs::kSameGrid});
}

}  // namespace shrink::int8
