// Every pruning stage's masks of a run merged per op (private to run/).
#pragma once

#include <shrink/run/context.hpp>

#include <map>
#include <string>
#include <utility>

namespace shrink {

// {op: (weight_mask, bias_mask)}: a later stage's mask of the same op multiplied in, the
// BatchNorms that follow a pruned convolution included (their mask as both), in the model's
// shapes now.
using MaskSet = std::map<std::string, std::pair<at::Tensor, at::Tensor>>;
MaskSet merged_masks(const RunContext& context);

}  // namespace shrink
