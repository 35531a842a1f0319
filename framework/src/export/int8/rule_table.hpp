// The int8 lowering's rules, keyed by the node kind each lowers ("aten::conv2d"). The walk
// (lowering.hpp) looks every node's kind up here; a kind with no rule stays float.
//
// Adding an op: a file in rules/ with its rule and an add_<family>_rules(RuleTable&) that
// registers it, that function listed in rules/rules.hpp and in RuleTable::standard(), the file in
// framework/CMakeLists.txt, and a case in tests/framework/export/int8_rules_test.cpp. The list is
// explicit (no static registrars) so that a rule cannot go missing from the table unnoticed.
#pragma once

#include <ATen/core/symbol.h>

#include <string>
#include <unordered_map>
#include <vector>

namespace torch::jit {
struct Node;
}  // namespace torch::jit

namespace shrink::int8 {

class Lowering;

// Lowers node `n` (and what it fuses with) through `lowering` when the pattern it knows is there
// (its input quantized, a fake-quant after it, ...); otherwise it changes nothing, and `n` runs in
// float on dequantized inputs.
using Rule = void (*)(Lowering& lowering, torch::jit::Node* n);

class RuleTable {
 public:
  // Every rule in rules/. Built once; thread-safe to read.
  static const RuleTable& standard();

  // Registers `rule` for nodes of the qualified kind `kind`. Throws shrink::Error when `kind` has
  // a rule already.
  void add(const char* kind, Rule rule);

  // The rule for nodes of `kind`; nullptr when there is none.
  Rule find(c10::Symbol kind) const;

  // The kinds with a rule, sorted.
  std::vector<std::string> kinds() const;

 private:
  std::unordered_map<c10::Symbol, Rule> rules_;
};

}  // namespace shrink::int8
