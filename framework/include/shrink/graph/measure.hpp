// What a model costs: multiply-accumulates per sample and median latency.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace shrink {

// Multiply-accumulates per sample of every convolution and linear on input `x` (their output
// elements times the weights each one reads).
int64_t count_macs(torch::jit::Module& module, const at::Tensor& x);

// Median milliseconds of a forward on `x` for each module, after one warm-up call each; the
// modules run in turns, so that a slow spell of the machine falls on all of them alike.
std::vector<double> median_latency(const std::vector<torch::jit::Module*>& modules,
                                   const at::Tensor& x, int runs);

}  // namespace shrink
