// Kernels an int8 model makes when it loads, for LibTorch 1.13's oneDNN kernels:
//
// - Small batches on a linear. oneDNN's int8 linear builds its primitive on every call, a fixed
//   cost that dominates at batch 1, where its int8 convolution caches the primitive of the first
//   input shape it sees. Inputs of at most kSmallRows rows run as a 1x1 convolution on the same
//   int8 weight (the same products and sums, so the same outputs); larger ones on the linear,
//   which is the faster one there.
// - Narrow convolutions before a max pool. Quantized max_pool2d on channels-last tensors is
//   vectorised over kPoolLanes channels and scalar for the rest, so a pool over fewer channels
//   is several times slower than one over kPoolLanes. A convolution with fewer than kPoolLanes
//   output channels whose output goes only through max pools into another convolution gets zero
//   filters up to kPoolLanes (zero weight, zero bias), and that convolution zero weights for
//   them: the extra channels hold the zero point and add nothing.
//
// docs/results.md ("int8 lowering: why the load-time kernels") has the timings behind both.
#pragma once

#include <cstdint>

namespace torch::jit {
struct Module;
}  // namespace torch::jit

namespace shrink::detail {

inline constexpr int64_t kSmallRows = 4;
inline constexpr int64_t kPoolLanes = 32;  // ATen's Vec<quint8> on AVX2

struct LoadTimeKernelCounts {
  int padded_convolutions = 0;  // convolutions that now run with zero channels added
  int small_batch_linears = 0;  // linears that now run small batches as a convolution
};

// Gives `frozen` (an int8 model from the lowering, frozen, its prepacking folded) both kinds of
// load-time kernel. Each lives in a submodule whose __setstate__ (what torch.jit.load calls with
// what __getstate__ saved) derives the kernel's packed weight from the packed weight the file
// stores, so that the file holds each weight once; forward calls the submodule's ops inlined.
LoadTimeKernelCounts add_load_time_kernels(torch::jit::Module& frozen);

}  // namespace shrink::detail
