// Data-parallel gradients: c10d's Reducer, as DistributedDataParallel uses it. Gradients are
// gathered into buckets (25 MiB, the first 1 MiB) as the backward produces them, and each full
// bucket is all-reduced while the backward goes on; at its end every parameter's .grad holds the
// mean over the ranks. Alone (world 1) it does nothing.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace shrink {

class Communicator;

class GradientReducer {
 public:
  // `parameters`: every tensor the optimizer trains, in the same order on every rank (those that
  // do not require a gradient are left out), and their `names` for errors; each must receive a
  // gradient in every step (one that does not is an error naming it, at the next step).
  GradientReducer(Communicator& communicator, const std::vector<at::Tensor>& parameters,
                  const std::vector<std::string>& names);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before each step's forward and backward: `loss` is what backward() will be called on.
  void before_forward();
  void before_backward(const at::Tensor& loss);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace shrink
