// Synchronized BatchNorm for data-parallel training (distributed.sync_bn: true): the batch
// statistics of every BatchNorm over the global batch (every rank's share of it), as torch's
// SyncBatchNorm computes them, instead of each rank's own. Forward: one all-reduce of the
// per-channel sums and sums of squares; backward: one of the per-channel sums of the gradient and
// of gradient x centred input. The weight and bias gradients stay each rank's (the gradient
// reducer averages them), so that 2 ranks of batch 32 train as 1 rank of batch 64.
#pragma once

#include <torch/script.h>

namespace shrink {

// A clone of `module` sharing its parameters and buffers, whose BatchNorms (every aten::batch_norm
// its forward reaches) synchronize while they train on more than one rank; in evaluation, or alone,
// they are plain BatchNorms. `count`: how many calls were rewritten.
torch::jit::Module with_sync_batch_norm(const torch::jit::Module& module, int* count = nullptr);

}  // namespace shrink
