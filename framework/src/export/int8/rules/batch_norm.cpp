// A BatchNorm that no convolution folded (a pre-activation block's, after a cat, say), on a
// quantized input, [a ReLU,] a fake-quant  ->  quantized::batch_norm[_relu] with the fake-quant's
// parameters and the BatchNorm's running statistics.
#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/fused_output.hpp"
#include "export/int8/rules/rules.hpp"
#include "export/int8/rules/weighted.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/constants.h>

namespace shrink::int8 {
namespace {

void lower_batch_norm(Lowering& lowering, torch::jit::Node* n) {
  // batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn)
  const Twin* in = lowering.twin(n->input(0));
  const auto training = torch::jit::constant_as<bool>(n->input(5));
  const auto eps = torch::jit::constant_as<double>(n->input(7));
  if (in == nullptr || training != false || !eps || !lowering.is_weight(n->input(3))) return;
  const at::Tensor mean = lowering.attribute(n->input(3));
  if (!mean.defined()) return;  // no running statistics: it normalises by the batch's own
  const int64_t c = mean.numel();
  const at::Tensor gamma = batch_norm_input(lowering, n, 1, c, 1.0);
  const at::Tensor beta = batch_norm_input(lowering, n, 2, c, 0.0);
  const at::Tensor var = batch_norm_input(lowering, n, 4, c, 1.0);
  if (!gamma.defined() || !beta.defined() || !var.defined()) return;
  torch::jit::Graph& graph = lowering.graph();
  torch::jit::WithInsertPoint guard(n);
  fuse_output(lowering, n,
              {in->q, graph.insertConstant(gamma), graph.insertConstant(beta),
               graph.insertConstant(mean.detach().to(at::kFloat)), graph.insertConstant(var),
               graph.insertConstant(*eps)},
              "quantized::batch_norm", "quantized::batch_norm_relu");
}

}  // namespace

void add_batch_norm_rules(RuleTable& table) {
  Needs needs{Needs::kOwnOutput};
  needs.fuses_relu = true;
  needs.tensor_inputs = 1;
  table.add("aten::batch_norm", lower_batch_norm, needs);
}

}  // namespace shrink::int8
