// Fake-quantization kernels side by side on the quick-start net's largest activation
// (conv1 output at batch 64: 64x20x24x24), forward and backward:
//   ATen's fake_quantize_per_tensor_affine (what torch.ao and model_qat.pt use) and aminmax, the
//   qat plugin's fused kernels (plugins/qat/fake_quant.hpp), and a plain copy as the memory-bound
//   floor.
//
//   cmake --build build --target fake_quant_bench && build/bin/fake_quant_bench
#include "../plugins/qat/fake_quant.hpp"

#include <benchmark/benchmark.h>
#include <torch/torch.h>

namespace {

const torch::Tensor& activation() {
  static const torch::Tensor x = torch::randn({64, 20, 24, 24});
  return x;
}

qat::QParams params() {
  qat::QParams p;
  p.scale = {0.02f};
  p.zero_point = {3.0f};
  p.qmin = -127;
  p.qmax = 127;
  return p;
}

void BM_AtenFakeQuantize(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(torch::fake_quantize_per_tensor_affine(activation(), 0.02, 3, -127, 127));
  }
}
void BM_AtenFakeQuantizeCachemaskBackward(benchmark::State& state) {
  const torch::Tensor grad = torch::randn_like(activation());
  for (auto _ : state) {
    auto out = torch::fake_quantize_per_tensor_affine_cachemask(activation(), 0.02, 3, -127, 127);
    benchmark::DoNotOptimize(grad * std::get<1>(out));
  }
}
void BM_QatFakeQuantize(benchmark::State& state) {
  const qat::QParams p = params();
  for (auto _ : state) benchmark::DoNotOptimize(qat::fake_quantize(activation(), p));
}
void BM_QatFakeQuantizeGrad(benchmark::State& state) {
  const qat::QParams p = params();
  const torch::Tensor grad = torch::randn_like(activation());
  for (auto _ : state) benchmark::DoNotOptimize(qat::fake_quantize_grad(activation(), grad, p));
}
void BM_AtenAminmax(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(torch::aminmax(activation()));
}
void BM_QatMinMax(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(qat::min_max(activation()));
}
void BM_Copy(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(activation().clone());
}

BENCHMARK(BM_AtenFakeQuantize)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AtenFakeQuantizeCachemaskBackward)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_QatFakeQuantize)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_QatFakeQuantizeGrad)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AtenAminmax)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_QatMinMax)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Copy)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(2);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
