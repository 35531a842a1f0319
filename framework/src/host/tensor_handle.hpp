// Host-side representation of the ABI's opaque shrink_tensor, and RAII for handles.
#pragma once

#include <shrink/plugin_api.h>

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

struct shrink_tensor {
  at::Tensor tensor;
};

namespace shrink::detail {

struct HandleRelease {
  void operator()(shrink_tensor* handle) const { delete handle; }
};
using TensorHandle = std::unique_ptr<shrink_tensor, HandleRelease>;

// New handle for a CPU, contiguous view of `tensor` (a copy only when it is not already so); with
// `keep_dense`, a non-overlapping dense tensor (channels-last, say) keeps its layout.
TensorHandle make_handle(const at::Tensor& tensor, bool keep_dense = false);
// The tensor behind a handle a plugin returned; takes ownership.
at::Tensor take_handle(shrink_tensor* handle);

// An error slot ready for one call.
shrink_error make_error();

bool current_call_is_training();
bool current_call_is_calibrating();

// Sets what host->is_training() and host->is_calibrating() answer on this thread while a plugin
// call runs; restores the previous values when it goes out of scope.
class TrainingScope {
 public:
  explicit TrainingScope(bool training, bool calibrating = false);
  ~TrainingScope();
  TrainingScope(const TrainingScope&) = delete;
  TrainingScope& operator=(const TrainingScope&) = delete;

 private:
  bool previous_;
  bool previous_calibrating_;
};

}  // namespace shrink::detail
