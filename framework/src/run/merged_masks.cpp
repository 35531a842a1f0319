#include "run/merged_masks.hpp"

#include <shrink/prune/pruning_stage.hpp>

#include <ATen/ATen.h>

namespace shrink {
namespace {

void multiply_in(at::Tensor& into, const at::Tensor& mask) {
  into = into.defined() ? into * mask : mask.clone();
}

}  // namespace

MaskSet merged_masks(const RunContext& c) {
  MaskSet merged;
  for (const auto& p : c.pruners) {
    for (const MaskedOp& op : p->ops()) {
      auto& m = merged[op.target.op_name];
      multiply_in(m.first, op.weight_mask);
      if (op.bias_mask.defined()) multiply_in(m.second, op.bias_mask);
    }
    for (const PruningStage::Follower& f : p->followers()) {
      auto& m = merged[f.op_name];
      multiply_in(m.first, f.mask);
      multiply_in(m.second, f.mask);
    }
  }
  return merged;
}

}  // namespace shrink
