// What the rules of conv2d and linear share: their operands, the ops after them that fuse into
// them ([fake-quant] [batch_norm] [fake-quant] [relu | hardtanh(0, 6)] [fake-quant]), and the
// int8 weight and bias, the BatchNorm folded in.
#pragma once

#include "export/int8/lowering.hpp"

#include <optional>
#include <string>
#include <vector>

namespace shrink::int8 {

// A convolution's or linear's operands when it can become int8: its input has a twin and its
// weight is a module attribute read through a fake-quant.
struct WeightedOperands {
  Twin input;
  FakeQuant weight_fq;
  at::Tensor weight;  // float32, as the module holds it (before its fake-quant)
  std::string name;   // "aten::conv2d (conv1)", for reports
};
std::optional<WeightedOperands> weighted_operands(Lowering& lowering, torch::jit::Node* n);

// Parameter `i` of BatchNorm `bn` (1 weight, 2 bias, 3 running_mean, 4 running_var), as a
// constant or a module attribute, float32; `fallback` (of `channels` values) where it is None;
// undefined when it is computed.
at::Tensor batch_norm_input(const Lowering& lowering, const torch::jit::Node* bn, std::size_t i,
                            int64_t channels, double fallback);

// The nodes after `n` that fuse into its int8 op. The int8 output takes the parameters of the
// last fake-quant.
struct FusedChain {
  std::vector<torch::jit::Node*> nodes;  // in order after `n`
  torch::jit::Node* batch_norm = nullptr;
  bool relu = false;
  torch::jit::Node* output_fq = nullptr;
  QParams out;
};
// Nothing (and a note that `name` stays float) when the output is not fake-quantized.
std::optional<FusedChain> fused_chain(Lowering& lowering, torch::jit::Node* n,
                                      const std::string& name);

// The int8 op's weight (float32, fake-quantized as the model did, the BatchNorm folded in), its
// per-output-channel symmetric scales, and its bias.
struct Int8Weight {
  at::Tensor weight, scales, bias;
  int64_t channels = 0;
};
// Nothing (and a note) when the bias or the BatchNorm's parameters are computed rather than
// parameters. `weight` is the operands' weight, its columns reordered where the rule did so.
std::optional<Int8Weight> int8_weight(Lowering& lowering, torch::jit::Node* n,
                                      const WeightedOperands& op, const at::Tensor& weight,
                                      const torch::jit::Node* batch_norm);

// The weight as a qint8 constant and the bias as a float one, inserted at the insert point.
struct Int8WeightValues {
  torch::jit::Value* weight;
  torch::jit::Value* bias;
};
Int8WeightValues insert_int8_weight(torch::jit::Graph& graph, const Int8Weight& w);

// `n` and its chain are replaced by the int8 op whose output is `q`.
void replace_with_int8(Lowering& lowering, torch::jit::Node* n, const FusedChain& chain,
                       torch::jit::Value* q);

}  // namespace shrink::int8
