// Fused fake-quantization kernels for the qat plugin.
//
// They compute exactly what ATen's fake_quantize_per_{tensor,channel}_affine compute
//   q = zero_point + nearbyint(x * (1 / scale)),  y = (clamp(q, qmin, qmax) - zero_point) * scale
// and the straight-through gradient masked where q falls outside [qmin, qmax], each in one pass
// that the compiler vectorises. Why not ATen's kernels: on this CPU they run a scalar loop with
// libm fmin/fmax, slow enough to dominate a QAT step (figures: docs/results.md, measured by
// bench/fake_quant_bench).
#pragma once

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <utility>
#include <vector>

namespace qat {

// Per-channel (or, with one channel, per-tensor) quantization parameters along the outermost
// dimension of a contiguous tensor: channel c covers elements [c * inner, (c + 1) * inner).
struct QParams {
  std::vector<float> scale;
  std::vector<float> zero_point;  // integral values
  float qmin = 0;
  float qmax = 0;
};

namespace detail {

// AVX2 and AVX-512 versions beside the baseline one, picked at load time by the CPU (GCC and
// Clang function multiversioning).
#if defined(__x86_64__) && !defined(__APPLE__)
#define SHRINK_QAT_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SHRINK_QAT_VECTOR_CLONES
#endif

// Round half to even for |v| <= 2^22 (the caller bounds v): adding and removing 1.5 * 2^23
// leaves the integer part in the mantissa, in the default rounding mode. Unlike std::nearbyint it
// vectorises without SSE4.1.
inline float round_even(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

// Elements per task: these kernels are memory-bound; 65536 splits the quick-start net's 204800-
// element activations across 2 threads (21 us instead of 31 for the forward,
// bench/fake_quant_bench) and leaves the small ones on one. at::parallel_for only splits in code
// compiled with OpenMP, which shrink::sdk adds.
constexpr int64_t kGrain = 65536;

// Calls f(begin, end, channel) over the element range split into per-channel pieces, in parallel.
template <typename F>
void for_each_piece(int64_t numel, int64_t channels, F f) {
  const int64_t inner = channels > 0 ? numel / channels : numel;
  at::parallel_for(0, numel, kGrain, [&](int64_t begin, int64_t end) {
    while (begin < end) {
      const int64_t channel = begin / inner;
      const int64_t stop = std::min(end, (channel + 1) * inner);
      f(begin, stop, channel);
      begin = stop;
    }
  });
}

// The bound that keeps v = x / scale in round_even's range without changing the result: values
// beyond [qmin - zp - 1, qmax - zp + 1] clamp (and mask) the same way.
struct Bounds {
  float scale, inv_scale, zero_point, lo, hi, qmin, qmax;
};
inline Bounds bounds(const QParams& p, int64_t channel) {
  const float scale = p.scale[static_cast<std::size_t>(channel)];
  const float zp = p.zero_point[static_cast<std::size_t>(channel)];
  return {scale, 1.0f / scale, zp, p.qmin - zp - 1.0f, p.qmax - zp + 1.0f, p.qmin, p.qmax};
}

// The inner loops, on raw pointers with the bounds by value and kept out of line, so that the
// compiler vectorises them (checked with -fopt-info-vec; inlined into the parallel_for lambda,
// GCC 12 gave up on them).
// Returns how many elements were clipped (fell outside [qmin, qmax] before clamping).
[[gnu::noinline]] SHRINK_QAT_VECTOR_CLONES inline int64_t fake_quantize_range(
    const float* __restrict in, float* __restrict out, int64_t n, const Bounds b) {
  int64_t clipped = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::min(std::max(in[i] * b.inv_scale, b.lo), b.hi);
    const float q = round_even(v) + b.zero_point;
    clipped += static_cast<int64_t>((q < b.qmin) | (q > b.qmax));
    out[i] = (std::min(std::max(q, b.qmin), b.qmax) - b.zero_point) * b.scale;
  }
  return clipped;
}

[[gnu::noinline]] SHRINK_QAT_VECTOR_CLONES inline void fake_quantize_grad_range(
    const float* __restrict in, const float* __restrict grad, float* __restrict out, int64_t n,
    const Bounds b) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::min(std::max(in[i] * b.inv_scale, b.lo), b.hi);
    const float q = round_even(v) + b.zero_point;
    const float g = grad[i];  // loaded unconditionally, and `&` rather than `&&`: no branch
    out[i] = ((q >= b.qmin) & (q <= b.qmax)) ? g : 0.0f;
  }
}

// Minimum and maximum, in 16 running lanes written with GCC/Clang vector extensions (a plain
// min/max reduction over floats does not vectorise without -ffast-math). NaNs are not propagated:
// a NaN activation fails the run at the loss check anyway.
[[gnu::noinline]] SHRINK_QAT_VECTOR_CLONES inline void min_max_range(const float* __restrict in,
                                                                     int64_t n, float& lo,
                                                                     float& hi) {
  typedef float Lanes __attribute__((vector_size(64)));
  constexpr int64_t kLanes = sizeof(Lanes) / sizeof(float);
  Lanes mn = {}, mx = {};
  mn += in[0];
  mx += in[0];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Lanes v;
    std::memcpy(&v, in + i, sizeof v);
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
  lo = mn[0];
  hi = mx[0];
  for (int64_t j = 1; j < kLanes; ++j) {
    lo = std::min(lo, mn[j]);
    hi = std::max(hi, mx[j]);
  }
  for (; i < n; ++i) {
    lo = std::min(lo, in[i]);
    hi = std::max(hi, in[i]);
  }
}

}  // namespace detail

// An uninitialised tensor with exactly x's strides, so that element i of one is element i of the
// other in memory. Not empty_like: for a size-1 dimension it may pick other strides, and a
// [N, 1, H, W] input then looked channels-last to the next convolution, which switched the rest of
// the network to channels-last (slower here, and fatal to a later `view`).
inline torch::Tensor same_layout(const torch::Tensor& x) {
  return torch::empty_strided(x.sizes(), x.strides(), x.options());
}

// Minimum and maximum of a dense float32 tensor, split across threads as fake_quantize
// splits it, so that each thread's part is still in its cache when fake_quantize reads it next.
inline std::pair<float, float> min_max(const torch::Tensor& x) {
  TORCH_CHECK(x.is_non_overlapping_and_dense(), "min_max: expected a dense tensor");
  const float* in = x.data_ptr<float>();
  std::mutex mutex;
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  detail::for_each_piece(x.numel(), 1, [&](int64_t begin, int64_t end, int64_t) {
    float piece_lo = 0, piece_hi = 0;
    detail::min_max_range(in + begin, end - begin, piece_lo, piece_hi);
    std::lock_guard<std::mutex> lock(mutex);
    lo = std::min(lo, piece_lo);
    hi = std::max(hi, piece_hi);
  });
  return {lo, hi};
}

// y = fake_quantize(x), in x's layout. x float32 and non-overlapping dense (element order does
// not matter per tensor); contiguous when per channel. `clipped`, when given, receives the number
// of elements outside the representable range, whose gradient fake_quantize_grad zeroes: when it is
// 0, that gradient is grad_output itself and the backward pass can skip the kernel.
inline torch::Tensor fake_quantize(const torch::Tensor& x, const QParams& p,
                                   int64_t* clipped = nullptr) {
  TORCH_CHECK(x.is_non_overlapping_and_dense() && (p.scale.size() == 1 || x.is_contiguous()),
              "fake_quantize: expected a dense tensor (contiguous per channel)");
  torch::Tensor y = same_layout(x);
  const float* in = x.data_ptr<float>();
  float* out = y.data_ptr<float>();
  std::atomic<int64_t> count{0};
  detail::for_each_piece(x.numel(), static_cast<int64_t>(p.scale.size()),
                         [&](int64_t begin, int64_t end, int64_t channel) {
                           count += detail::fake_quantize_range(
                               in + begin, out + begin, end - begin, detail::bounds(p, channel));
                         });
  if (clipped != nullptr) *clipped = count.load();
  return y;
}

// grad_input = grad_output where qmin <= zero_point + nearbyint(x / scale) <= qmax, else 0.
inline torch::Tensor fake_quantize_grad(const torch::Tensor& x, const torch::Tensor& grad_output,
                                        const QParams& p) {
  TORCH_CHECK(x.is_non_overlapping_and_dense() && (p.scale.size() == 1 || x.is_contiguous()),
              "fake_quantize_grad: expected a dense tensor (contiguous per channel)");
  const torch::Tensor g =
      grad_output.strides() == x.strides() ? grad_output : same_layout(x).copy_(grad_output);
  torch::Tensor result = same_layout(x);
  const float* in = x.data_ptr<float>();
  const float* go = g.data_ptr<float>();
  float* out = result.data_ptr<float>();
  detail::for_each_piece(x.numel(), static_cast<int64_t>(p.scale.size()),
                         [&](int64_t begin, int64_t end, int64_t channel) {
                           detail::fake_quantize_grad_range(in + begin, go + begin, out + begin,
                                                            end - begin,
                                                            detail::bounds(p, channel));
                         });
  return result;
}

}  // namespace qat
