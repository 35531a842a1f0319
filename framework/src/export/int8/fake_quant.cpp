#include "export/int8/fake_quant.hpp"

#include "graph/graph_utils.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>

namespace shrink::int8 {
namespace {

std::optional<FakeQuant> per_tensor(const torch::jit::Node* n) {
  using torch::jit::constant_as;
  auto scale = constant_as<double>(n->input(1));
  auto zero_point = constant_as<int64_t>(n->input(2));
  auto lo = constant_as<int64_t>(n->input(3)), hi = constant_as<int64_t>(n->input(4));
  if (!scale || !zero_point || !lo || !hi) return std::nullopt;
  FakeQuant f;
  f.scale = *scale;
  f.zero_point = *zero_point;
  f.qmin = *lo;
  f.qmax = *hi;
  return f;
}

std::optional<FakeQuant> per_channel(const torch::jit::Node* n) {
  using torch::jit::constant_as;
  auto scales = constant_as<at::Tensor>(n->input(1));
  auto zero_points = constant_as<at::Tensor>(n->input(2));
  auto axis = constant_as<int64_t>(n->input(3));
  auto lo = constant_as<int64_t>(n->input(4)), hi = constant_as<int64_t>(n->input(5));
  if (!scales || !zero_points || !axis || !lo || !hi) return std::nullopt;
  FakeQuant f;
  f.per_channel = true;
  f.scales = *scales;
  f.zero_points = *zero_points;
  f.axis = *axis;
  f.qmin = *lo;
  f.qmax = *hi;
  return f;
}

}  // namespace

std::optional<FakeQuant> fake_quant_of(const torch::jit::Node* n) {
  if (detail::is(n, kFakeQuantPerTensor) && n->inputs().size() == 5) return per_tensor(n);
  if (detail::is(n, kFakeQuantPerChannel) && n->inputs().size() == 6) return per_channel(n);
  return std::nullopt;
}

at::Tensor fake_quantized(const at::Tensor& w, const FakeQuant& f) {
  return f.per_channel
             ? at::fake_quantize_per_channel_affine(
                   w, f.scales.to(at::kFloat), f.zero_points.to(at::kInt), f.axis, f.qmin, f.qmax)
             : at::fake_quantize_per_tensor_affine(w, f.scale, f.zero_point, f.qmin, f.qmax);
}

}  // namespace shrink::int8
