#include "export/batchnorm_fold.hpp"

#include <shrink/export/int8_export.hpp>
#include <shrink/graph/model.hpp>

#include "graph/graph_utils.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/freeze_module.h>

#include <utility>
#include <vector>

namespace shrink {
namespace detail {
namespace {

using torch::jit::Node;
using torch::jit::Value;

// A tensor constant of the frozen graph, as float32; undefined when `v` is not one.
at::Tensor float_constant(const Value* v) {
  auto t = torch::jit::constant_as<at::Tensor>(v);
  return t ? t->to(at::kFloat) : at::Tensor();
}

// `v` as float32: `fallback` for every channel where it is None; undefined when it is not a
// constant.
at::Tensor constant_or(const Value* v, int64_t channels, double fallback) {
  return v->type()->kind() == c10::TypeKind::NoneType ? at::full({channels}, fallback)
                                                      : float_constant(v);
}

// Folds the inference-mode `bn` into `conv` when all their parameters are constants.
bool fold_pair(torch::jit::Graph& graph, Node* conv, Node* bn) {
  if (torch::jit::constant_as<bool>(bn->input(5)) != false) return false;  // training mode
  at::Tensor w = float_constant(conv->input(1));
  if (!w.defined()) return false;
  const int64_t channels = w.size(0);
  at::Tensor b = constant_or(conv->input(2), channels, 0.0);
  const at::Tensor gamma = constant_or(bn->input(1), channels, 1.0);
  const at::Tensor beta = constant_or(bn->input(2), channels, 0.0);
  const at::Tensor mean = constant_or(bn->input(3), channels, 0.0);
  const at::Tensor var = constant_or(bn->input(4), channels, 1.0);
  const auto eps = torch::jit::constant_as<double>(bn->input(7));
  if (!b.defined() || !gamma.defined() || !beta.defined() || !mean.defined() || !var.defined() ||
      !eps) {
    return false;
  }
  fold_batchnorm_into(w, b, gamma, beta, mean, var, *eps);
  torch::jit::WithInsertPoint guard(conv);
  conv->replaceInput(1, graph.insertConstant(w.contiguous()));
  conv->replaceInput(2, graph.insertConstant(b.contiguous()));
  bn->output()->replaceAllUsesWith(conv->output());
  bn->destroy();
  return true;
}

}  // namespace

int fold_frozen_batchnorms(torch::jit::Graph& graph) {
  // Pairs first: folding destroys BatchNorm nodes that a walk would still visit.
  std::vector<std::pair<Node*, Node*>> pairs;
  for (Node* conv : all_nodes(graph.block())) {
    if (Node* bn = batch_norm_after(conv).batch_norm) pairs.emplace_back(conv, bn);
  }
  int folded = 0;
  for (const auto& [conv, bn] : pairs) folded += fold_pair(graph, conv, bn) ? 1 : 0;
  torch::jit::EliminateDeadCode(graph.block());
  return folded;
}

}  // namespace detail

int fold_batchnorm(const std::string& model, const std::string& out_file) {
  torch::jit::Module module = load_torchscript(model);
  module.eval();
  torch::jit::Module frozen = torch::jit::freeze_module(module);
  const int folded = detail::fold_frozen_batchnorms(*frozen.get_method("forward").graph());
  save_torchscript(frozen, out_file);
  return folded;
}

}  // namespace shrink
