// Max, average and adaptive average pooling, and mean over dims (global pooling, shufflenet's
// x.mean([2, 3])), run on the quantized tensor with its parameters: each output is a value of the
// input, or an average of them rounded to its grid.
#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/rules.hpp"
#include "export/int8/rules/value_op.hpp"
#include "graph/graph_utils.hpp"

#include <torch/csrc/jit/ir/constants.h>

#include <algorithm>

namespace shrink::int8 {
namespace {

void lower_pooling(Lowering& lowering, torch::jit::Node* n) {
  lower_on_twin(lowering, n, Channels::kKept);
}

// mean(x, dims, keepdim=False) on an int8 convolution's output of 1x1 pixels fails in LibTorch
// 1.13 (its channels-last result cannot drop two dims), so it runs with keepdim=True and squeezes
// the reduced dims after: the same values. Constant dims, all >= 0 or all < 0; else left float.
void lower_mean(Lowering& lowering, torch::jit::Node* n) {
  const Twin* in = lowering.twin(n->input(0));
  auto dims = n->inputs().size() == 4 ? torch::jit::constant_as<std::vector<int64_t>>(n->input(1))
                                      : c10::nullopt;
  const auto keepdim =
      n->inputs().size() == 4 ? torch::jit::constant_as<bool>(n->input(2)) : c10::nullopt;
  if (in == nullptr || !dims || !keepdim || dims->empty()) return;
  if (*keepdim) return lower_on_twin(lowering, n, Channels::kKept);
  const bool negative = (*dims)[0] < 0;
  for (int64_t d : *dims) {
    if ((d < 0) != negative) return;
  }
  // Squeezed from the last dim first (>= 0) or the first first (< 0), so that each index holds.
  std::sort(dims->begin(), dims->end(),
            [&](int64_t a, int64_t b) { return negative ? a < b : a > b; });
  const Twin twin = *in;
  torch::jit::Graph& graph = lowering.graph();
  torch::jit::WithInsertPoint guard(n);
  torch::jit::Value* q = graph.insert(detail::sym("aten::mean"), {twin.q, n->input(1), true},
                                      {torch::jit::NamedValue("dtype", n->input(3))});
  for (int64_t d : *dims) q = graph.insert(detail::sym("aten::squeeze"), {q, d});
  lowering.set_twin(n->output(), q, twin.p);
  lowering.kill(n);
}

}  // namespace

void add_pooling_rules(RuleTable& table) {
  for (const char* kind : {"aten::max_pool2d", "aten::avg_pool2d", "aten::adaptive_avg_pool2d"}) {
    table.add(kind, lower_pooling, {Needs::kSameGrid});
  }
  table.add("aten::mean", lower_mean, {Needs::kSameGrid});
}

}  // namespace shrink::int8
