// The cost of one quantize call through the plugin ABI, forward and backward, on a tiny tensor
// (the fixed cost per site) and on the quick-start net's largest activation, for the qat plugin.
//
//   cmake --build build --target quantize_call_bench && build/bin/quantize_call_bench
#include <shrink/host/plugin_registry.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <memory>

namespace {

struct Fixture {
  Fixture() {
    registry.discover({{SHRINK_BENCH_PLUGIN_DIR, shrink::PathOrigin::kCommandLine}});
    quantizer =
        std::make_unique<shrink::QuantizerInstance>(registry.require("qat"), shrink::Options{});
    shrink::SiteSpec spec;
    spec.module_name = "relu1";
    spec.module_type = "ReLU6";
    spec.target = "_output_0";
    spec.quant_type = shrink::QuantType::kOutput;
    spec.config.set("quant_dtype", "int8");
    spec.config.set("quant_bits", "8");
    site = quantizer->add_site(spec);
    quantizer->set_training(true);
  }
  shrink::PluginRegistry registry;
  std::unique_ptr<shrink::QuantizerInstance> quantizer;
  int site = 0;
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void BM_QuantizeForward(benchmark::State& state) {
  Fixture& f = fixture();
  const torch::Tensor x = state.range(0) == 0 ? torch::randn({16}) : torch::randn({64, 20, 24, 24});
  for (auto _ : state) benchmark::DoNotOptimize(f.quantizer->forward_raw(f.site, x));
}
void BM_QuantizeBackward(benchmark::State& state) {
  Fixture& f = fixture();
  const torch::Tensor x = state.range(0) == 0 ? torch::randn({16}) : torch::randn({64, 20, 24, 24});
  const torch::Tensor grad = torch::randn_like(x);
  f.quantizer->forward_raw(f.site, x);
  for (auto _ : state) benchmark::DoNotOptimize(f.quantizer->backward_raw(f.site, x, grad));
}
void BM_QuantizeForwardBackward(benchmark::State& state) {
  Fixture& f = fixture();
  const torch::Tensor x = state.range(0) == 0 ? torch::randn({16}) : torch::randn({64, 20, 24, 24});
  for (auto _ : state) {
    torch::Tensor input = x.detach().requires_grad_(true);
    f.quantizer->quantize(f.site, input).sum().backward();
    benchmark::DoNotOptimize(input.grad());
  }
}

BENCHMARK(BM_QuantizeForward)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_QuantizeBackward)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_QuantizeForwardBackward)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(2);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
