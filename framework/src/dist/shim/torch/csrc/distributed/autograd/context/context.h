// Debian's libtorch-dev 1.13 ships c10d/reducer.hpp but not the distributed-autograd header it
// includes. The Reducer only holds a shared_ptr to this context (for RPC's distributed autograd,
// which Shrink does not use) and checks that GradCallback matches its own, so these declarations
// are all it needs; the layout is the same as LibTorch's (a shared_ptr does not depend on what it
// points to).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch::distributed::autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};
using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace torch::distributed::autograd
