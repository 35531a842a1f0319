// The int8 lowering's rules, keyed by the node kind each lowers ("aten::conv2d"). The walk
// (lowering.hpp) looks every node's kind up here; a kind with no rule stays float.
//
// Adding an op: a file in rules/ with its rule and an add_<family>_rules(RuleTable&) that
// registers it with what it needs (Needs: the int8_onednn placement reads it, so the preset puts
// sites where the rule looks), that function listed in rules/rules.hpp and in
// RuleTable::standard(), the file in framework/CMakeLists.txt, and a case in
// tests/framework/export/int8_rules_test.cpp. The list is explicit (no static registrars) so that
// a rule cannot go missing from the table unnoticed.
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

// What a rule needs quantized around its node: the int8 placement (int8_placement.hpp) puts the
// fake-quant sites exactly there, so that each rule finds its pattern.
struct Needs {
  enum Kind {
    kNothing,      // the rule of a fake-quant itself
    kWeighted,     // conv2d, linear: input 0 quantized, a weight site, the output quantized after
                   // the ops it fuses
    kOwnOutput,    // add, cat, mul, ...: its data inputs quantized, and its output (after the ops
                   // it fuses) with a range of its own
    kFixedOutput,  // sigmoid, hardsigmoid: input 0 quantized; the output on the kernel's own grid
    kSameGrid,     // pooling, ReLU, reshapes, chunk: runs on input 0's quantized tensor, whose
                   // parameters its outputs keep
  };
  Kind kind = kNothing;
  bool fuses_batch_norm = false;  // a BatchNorm right after it folds in
  bool fuses_relu = false;        // a ReLU (or hardtanh(0, x)) after it fuses
  int tensor_inputs = -1;         // kOwnOutput: how many tensor data inputs it lowers (-1: any)
  bool shares_range = false;      // kOwnOutput: inputs and output are best on one range (cat)
  int64_t min_weights = 0;        // kWeighted: fewer weights than this stay float (faster)
};

class RuleTable {
 public:
  // Every rule in rules/. Built once; thread-safe to read.
  static const RuleTable& standard();

  // Registers `rule` for nodes of the qualified kind `kind`, needing `needs`. Throws
  // shrink::Error when `kind` has a rule already.
  void add(const char* kind, Rule rule, Needs needs);

  // The rule for nodes of `kind`; nullptr when there is none.
  Rule find(c10::Symbol kind) const;
  // What that rule needs; nullptr when there is none.
  const Needs* needs(c10::Symbol kind) const;

  // The kinds with a rule, sorted.
  std::vector<std::string> kinds() const;

 private:
  struct Entry {
    Rule rule;
    Needs needs;
  };
  std::unordered_map<c10::Symbol, Entry> rules_;
};

}  // namespace shrink::int8
