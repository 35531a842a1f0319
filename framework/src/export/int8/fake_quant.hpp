// The fake-quant nodes of a model_qat.pt (aten::fake_quantize_per_tensor_affine and
// aten::fake_quantize_per_channel_affine) and their parameters, as the int8 rules read them.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace torch::jit {
struct Node;
}  // namespace torch::jit

namespace shrink::int8 {

inline constexpr const char* kFakeQuantPerTensor = "aten::fake_quantize_per_tensor_affine";
inline constexpr const char* kFakeQuantPerChannel = "aten::fake_quantize_per_channel_affine";

struct FakeQuant {
  bool per_channel = false;
  double scale = 0;
  int64_t zero_point = 0;
  at::Tensor scales, zero_points;  // per channel
  int64_t axis = 0;
  int64_t qmin = 0, qmax = 0;
};

// The parameters of `n` when it is a fake-quant node whose parameters are constants of the graph;
// nothing otherwise.
std::optional<FakeQuant> fake_quant_of(const torch::jit::Node* n);

// `w` (float32) fake-quantized as `f` does it: the values the fake-quant model computed with.
at::Tensor fake_quantized(const at::Tensor& w, const FakeQuant& f);

}  // namespace shrink::int8
