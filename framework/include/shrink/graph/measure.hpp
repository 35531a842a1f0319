// What a model costs: multiply-accumulates per sample and median latency.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace shrink {

// The intra-op thread count set to `n` for a scope (timings are one thread), then restored on
// every path.
class ThreadCount {
 public:
  explicit ThreadCount(int n);
  ~ThreadCount();
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int before_;
};

// The instruction set oneDNN runs its kernels with in this process, as oneDNN names it in
// ONEDNN_MAX_CPU_ISA ("AVX512_CORE_AMX", "AVX512_CORE_VNNI", ...; the variable caps it), or ""
// when LibTorch's oneDNN does not say (a build that hides its symbols).
std::string onednn_isa();

// Multiply-accumulates per sample of every convolution and linear on input `x` (their output
// elements times the weights each one reads).
int64_t count_macs(torch::jit::Module& module, const at::Tensor& x);

// Median milliseconds of a forward on `x` for each module, after one warm-up call each. Each of
// `runs` (> 0) rounds gives every module a turn of kCallsPerTurn calls in a row, in an order
// rotated round by round and reversed every other round, so that a slow spell of the machine
// falls on all of them alike and each follows each other model in turn.
// `ms`: the median of the calls after each turn's first, the model's weights and buffers warm in
// the caches (a model answering calls back to back). `cold_ms`: the median of each turn's first
// call, right after the other models took the caches (a model called between other work). The
// two differ most for small models: the quick start's int8 model runs in half the time warm.
constexpr int kCallsPerTurn = 4;
struct Medians {
  std::vector<double> ms, cold_ms;  // per module, in order
};
Medians median_latency(const std::vector<torch::jit::Module*>& modules, const at::Tensor& x,
                       int runs);

// `module` (in evaluation mode) as the fastest float model a user can make of it without Shrink:
// frozen (attributes become constants) and through torch::jit::optimize_for_inference
// (BatchNorms folded into convolutions, ops fused). Throws shrink::Error when freezing fails.
torch::jit::Module frozen_for_inference(const torch::jit::Module& module);

// Median latencies of several models on random inputs of one sample's shape, for each batch
// size, measured side by side (median_latency). `runs` 0: enough rounds for about `budget_ms` per
// model and batch size (at least `min_runs`, at most 500). A model that does not take the input is
// a shrink::Error naming it. `fresh`: each batch size is timed on a copy of the model saved and
// loaded again. LibTorch 1.13's oneDNN int8 convolution keeps the kernel of the first input shape
// it sees and rebuilds one on every call of another shape, so an int8 model timed at batch 64 after
// batch 1 would pay for that, which a deployment at one batch size does not.
struct NamedModel {
  std::string name;
  torch::jit::Module* module;
  bool fresh = false;
};
struct LatencyRow {
  int64_t batch = 0;
  int runs = 0;
  std::vector<double> ms, cold_ms;  // per model, in order (median_latency's)
};
// `module` saved and loaded again (in evaluation mode): what a user's torch.jit.load gives, kernels
// made when it loads included.
torch::jit::Module reloaded(const torch::jit::Module& module);

// The fastest by `ms` (a row's warm or cold medians) of the models called `name` or `name_<form>`
// ("fp32", "fp32_frozen"): its index in `models`, or -1 when there is none.
int fastest(const std::vector<NamedModel>& models, const std::vector<double>& ms,
            const std::string& name);

std::vector<LatencyRow> latency_table(const std::vector<NamedModel>& models,
                                      const std::vector<int64_t>& sample_shape,
                                      const std::vector<int64_t>& batches, int runs,
                                      double budget_ms, int min_runs);

}  // namespace shrink
