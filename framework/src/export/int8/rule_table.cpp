#include "export/int8/rule_table.hpp"

#include <shrink/core/error.hpp>

#include "export/int8/rules/rules.hpp"

#include <algorithm>

namespace shrink::int8 {

const RuleTable& RuleTable::standard() {
  static const RuleTable table = [] {
    RuleTable t;
    add_fake_quant_rules(t);
    add_conv2d_rules(t);
    add_linear_rules(t);
    add_pooling_rules(t);
    add_relu_rules(t);
    add_reshape_rules(t);
    add_dropout_rules(t);
    add_add_rules(t);
    add_cat_rules(t);
    add_hardswish_rules(t);
    add_batch_norm_rules(t);
    add_sigmoid_rules(t);
    add_mul_rules(t);
    add_chunk_rules(t);
    return t;
  }();
  return table;
}

void RuleTable::add(const char* kind, Rule rule, Needs needs) {
  SHRINK_CHECK(rules_.emplace(c10::Symbol::fromQualString(kind), Entry{rule, needs}).second,
               "int8 lowering: two rules for " << kind);
}

Rule RuleTable::find(c10::Symbol kind) const {
  auto it = rules_.find(kind);
  return it == rules_.end() ? nullptr : it->second.rule;
}

const Needs* RuleTable::needs(c10::Symbol kind) const {
  auto it = rules_.find(kind);
  return it == rules_.end() ? nullptr : &it->second.needs;
}

std::vector<std::string> RuleTable::kinds() const {
  std::vector<std::string> out;
  for (const auto& [kind, rule] : rules_) out.push_back(kind.toQualString());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace shrink::int8
