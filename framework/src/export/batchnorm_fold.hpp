// BatchNorm folded into the convolution before it in a frozen float model: what fold_batchnorm
// (int8_export.hpp) writes. The int8 lowering folds BatchNorms itself, into int8 weights (see
// int8/rules/weighted.hpp); both use detail::fold_batchnorm_into's arithmetic.
#pragma once

namespace torch::jit {
struct Graph;
}  // namespace torch::jit

namespace shrink::detail {

// conv2d -> batch_norm pairs of a frozen graph (every parameter a constant), the BatchNorm in
// inference mode: the BatchNorm goes, the convolution takes the folded weight and bias. Pairs
// with a parameter that is not a constant stay. Returns how many were folded.
int fold_frozen_batchnorms(torch::jit::Graph& graph);

}  // namespace shrink::detail
