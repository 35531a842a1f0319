// Fake-quantization kernels side by side on the quick-start net's activations at batch 64
// (the argument: 737280 = conv1's output 64x20x24x24, 204800 = conv2's, 51200 = fc1's input),
// forward and backward, on the intra-op threads LibTorch has (2 here):
//   ATen's fake_quantize_per_tensor_affine (what torch.ao and model_qat.pt use) and aminmax, the
//   qat plugin's fused kernels (plugins/qat/fake_quant.hpp), and a plain copy as the memory-bound
//   floor.
//
//   cmake --build build --target fake_quant_bench && build/bin/fake_quant_bench
#include "../plugins/qat/fake_quant.hpp"

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <map>
#include <vector>

namespace {

// One tensor per size, made once.
const torch::Tensor& activation(int64_t numel) {
  static std::map<int64_t, torch::Tensor> made;
  torch::Tensor& x = made[numel];
  if (!x.defined()) x = torch::randn({numel});
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
    benchmark::DoNotOptimize(
        torch::fake_quantize_per_tensor_affine(activation(state.range(0)), 0.02, 3, -127, 127));
  }
}
void BM_AtenFakeQuantizeCachemaskBackward(benchmark::State& state) {
  const torch::Tensor grad = torch::randn_like(activation(state.range(0)));
  for (auto _ : state) {
    auto out = torch::fake_quantize_per_tensor_affine_cachemask(activation(state.range(0)), 0.02, 3,
                                                                -127, 127);
    benchmark::DoNotOptimize(grad * std::get<1>(out));
  }
}
void BM_QatFakeQuantize(benchmark::State& state) {
  const qat::QParams p = params();
  for (auto _ : state) benchmark::DoNotOptimize(qat::fake_quantize(activation(state.range(0)), p));
}
void BM_QatFakeQuantizeGrad(benchmark::State& state) {
  const qat::QParams p = params();
  const torch::Tensor grad = torch::randn_like(activation(state.range(0)));
  for (auto _ : state)
    benchmark::DoNotOptimize(qat::fake_quantize_grad(activation(state.range(0)), grad, p));
}
void BM_AtenAminmax(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(torch::aminmax(activation(state.range(0))));
}
void BM_QatMinMax(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(qat::min_max(activation(state.range(0))));
}
void BM_Copy(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(activation(state.range(0)).clone());
}

BENCHMARK(BM_AtenFakeQuantize)->Arg(737280)->Arg(204800)->Arg(51200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AtenFakeQuantizeCachemaskBackward)
    ->Arg(737280)
    ->Arg(204800)
    ->Arg(51200)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_QatFakeQuantize)->Arg(737280)->Arg(204800)->Arg(51200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_QatFakeQuantizeGrad)
    ->Arg(737280)
    ->Arg(204800)
    ->Arg(51200)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AtenAminmax)->Arg(737280)->Arg(204800)->Arg(51200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_QatMinMax)->Arg(737280)->Arg(204800)->Arg(51200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Copy)->Arg(737280)->Arg(204800)->Arg(51200)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(2);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
