#include <shrink/core/logging.hpp>
#include <shrink/core/version.hpp>
#include <shrink/dist/communicator.hpp>
#include <shrink/host/host_api.hpp>

#include "host/tensor_handle.hpp"

#include <ATen/DLConvertor.h>
#include <torch/torch.h>

#include <cstdio>
#include <exception>
#include <vector>

namespace shrink::detail {

TensorHandle make_handle(const at::Tensor& tensor, bool keep_dense) {
  at::Tensor t = tensor;
  if (t.defined()) {
    if (!t.device().is_cpu()) t = t.cpu();
    if (!(keep_dense && t.is_non_overlapping_and_dense())) t = t.contiguous();
  }
  return TensorHandle(new shrink_tensor{t});
}

at::Tensor take_handle(shrink_tensor* handle) {
  TensorHandle owned(handle);
  return owned ? owned->tensor : at::Tensor();
}

namespace {
thread_local bool t_training = false;
thread_local bool t_calibrating = false;
}  // namespace

TrainingScope::TrainingScope(bool training, bool calibrating)
    : previous_(t_training), previous_calibrating_(t_calibrating) {
  t_training = training;
  t_calibrating = calibrating;
}
TrainingScope::~TrainingScope() {
  t_training = previous_;
  t_calibrating = previous_calibrating_;
}

bool current_call_is_training() { return t_training; }
bool current_call_is_calibrating() { return t_calibrating; }

shrink_error make_error() {
  shrink_error error;
  error.struct_size = sizeof(shrink_error);
  error.message[0] = '\0';
  return error;
}

}  // namespace shrink::detail

namespace {

using shrink::detail::make_handle;

void write_error(shrink_error* error, const char* message) {
  if (error != nullptr) std::snprintf(error->message, SHRINK_ERROR_MESSAGE_CAPACITY, "%s", message);
}

// Runs `body`; exceptions become a status, so nothing throws back into a plugin.
template <typename Body>
shrink_status guarded(shrink_error* error, Body&& body) noexcept {
  try {
    body();
    return SHRINK_STATUS_OK;
  } catch (const c10::Error& e) {
    write_error(error, e.what_without_backtrace());
  } catch (const std::exception& e) {
    write_error(error, e.what());
  } catch (...) {
    write_error(error, "unknown exception in the host");
  }
  return SHRINK_STATUS_ERROR;
}

at::ScalarType to_scalar_type(shrink_dtype dtype) {
  switch (dtype) {
    case SHRINK_DTYPE_FLOAT32:
      return at::kFloat;
    case SHRINK_DTYPE_FLOAT64:
      return at::kDouble;
    case SHRINK_DTYPE_INT8:
      return at::kChar;
    case SHRINK_DTYPE_UINT8:
      return at::kByte;
    case SHRINK_DTYPE_INT32:
      return at::kInt;
    case SHRINK_DTYPE_INT64:
      return at::kLong;
    case SHRINK_DTYPE_BOOL:
      return at::kBool;
    default:
      throw std::invalid_argument("unknown shrink_dtype " + std::to_string(dtype));
  }
}

shrink_dtype to_shrink_dtype(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return SHRINK_DTYPE_FLOAT32;
    case at::kDouble:
      return SHRINK_DTYPE_FLOAT64;
    case at::kChar:
      return SHRINK_DTYPE_INT8;
    case at::kByte:
      return SHRINK_DTYPE_UINT8;
    case at::kInt:
      return SHRINK_DTYPE_INT32;
    case at::kLong:
      return SHRINK_DTYPE_INT64;
    case at::kBool:
      return SHRINK_DTYPE_BOOL;
    default:
      return -1;
  }
}

void host_log(shrink_log_level level, const char* plugin_name, const char* message) {
  try {
    std::string line =
        std::string("[") + (plugin_name ? plugin_name : "plugin") + "] " + (message ? message : "");
    switch (level) {
      case SHRINK_LOG_TRACE:
      case SHRINK_LOG_DEBUG:
        shrink::logging::debug(line);
        break;
      case SHRINK_LOG_INFO:
        shrink::logging::info(line);
        break;
      case SHRINK_LOG_WARN:
        shrink::logging::warn(line);
        break;
      default:
        shrink::logging::error(line);
        break;
    }
  } catch (...) {
    // Logging never fails towards a plugin.
  }
}

shrink_status tensor_create(shrink_dtype dtype, int32_t ndim, const int64_t* shape,
                            shrink_tensor** out, shrink_error* error) {
  return guarded(error, [&] {
    if (ndim < 0 || (ndim > 0 && shape == nullptr)) throw std::invalid_argument("bad shape");
    std::vector<int64_t> sizes(shape, shape + ndim);
    at::Tensor t = torch::zeros(sizes, torch::TensorOptions().dtype(to_scalar_type(dtype)));
    *out = make_handle(t).release();
  });
}

shrink_status tensor_clone(const shrink_tensor* tensor, shrink_tensor** out, shrink_error* error) {
  return guarded(error, [&] {
    if (tensor == nullptr) throw std::invalid_argument("tensor_clone of NULL");
    *out = make_handle(tensor->tensor.clone()).release();
  });
}

void tensor_release(shrink_tensor* tensor) { delete tensor; }

int32_t tensor_ndim(const shrink_tensor* tensor) {
  return tensor ? static_cast<int32_t>(tensor->tensor.dim()) : 0;
}

void tensor_shape(const shrink_tensor* tensor, int64_t* shape) {
  if (tensor == nullptr || shape == nullptr) return;
  for (int64_t i = 0; i < tensor->tensor.dim(); ++i) shape[i] = tensor->tensor.size(i);
}

int64_t tensor_numel(const shrink_tensor* tensor) { return tensor ? tensor->tensor.numel() : 0; }

shrink_dtype tensor_dtype(const shrink_tensor* tensor) {
  return tensor ? to_shrink_dtype(tensor->tensor.scalar_type()) : -1;
}

void* tensor_data(shrink_tensor* tensor) {
  return tensor && tensor->tensor.defined() ? tensor->tensor.data_ptr() : nullptr;
}

const void* tensor_const_data(const shrink_tensor* tensor) {
  return tensor && tensor->tensor.defined() ? tensor->tensor.data_ptr() : nullptr;
}

shrink_status tensor_to_dlpack(const shrink_tensor* tensor, void** out, shrink_error* error) {
  return guarded(error, [&] {
    if (tensor == nullptr) throw std::invalid_argument("tensor_to_dlpack of NULL");
    *out = at::toDLPack(tensor->tensor);
  });
}

shrink_status tensor_from_dlpack(void* dl_managed, shrink_tensor** out, shrink_error* error) {
  auto* dl = static_cast<DLManagedTensor*>(dl_managed);
  return guarded(error, [&] {
    if (dl == nullptr) throw std::invalid_argument("tensor_from_dlpack of NULL");
    at::Tensor t;
    try {
      t = at::fromDLPack(dl);  // takes ownership on success
    } catch (...) {
      if (dl->deleter) dl->deleter(dl);
      throw;
    }
    *out = make_handle(t, /*keep_dense=*/true).release();
  });
}

static_assert(static_cast<int>(shrink::ReduceOp::kSum) == SHRINK_REDUCE_SUM &&
                  static_cast<int>(shrink::ReduceOp::kMin) == SHRINK_REDUCE_MIN &&
                  static_cast<int>(shrink::ReduceOp::kMax) == SHRINK_REDUCE_MAX &&
                  static_cast<int>(shrink::ReduceOp::kMean) == SHRINK_REDUCE_MEAN,
              "the ABI's reduce ops are the communicator's");

int32_t world_size() {
  return shrink::current_communicator().active() ? shrink::current_communicator().world() : 1;
}
int32_t rank() {
  return shrink::current_communicator().active() ? shrink::current_communicator().rank() : 0;
}

shrink_status all_reduce(shrink_tensor* tensor, shrink_reduce_op op, shrink_error* error) {
  return guarded(error, [&] {
    if (tensor == nullptr || !tensor->tensor.defined()) {
      throw std::invalid_argument("all_reduce of NULL");
    }
    if (op < SHRINK_REDUCE_SUM || op > SHRINK_REDUCE_MEAN) {
      throw std::invalid_argument("all_reduce: op " + std::to_string(op) +
                                  " is not a SHRINK_REDUCE_* value");
    }
    const at::ScalarType type = tensor->tensor.scalar_type();
    const bool floating = type == at::kFloat || type == at::kDouble;
    if (!(floating || (type == at::kLong && op != SHRINK_REDUCE_MEAN))) {
      throw std::invalid_argument("all_reduce: a " + std::string(c10::toString(type)) +
                                  " tensor; float32, float64 or int64 (not MEAN) expected");
    }
    shrink::current_communicator().all_reduce(tensor->tensor, static_cast<shrink::ReduceOp>(op),
                                              "a plugin's all_reduce");
  });
}

shrink_status broadcast(shrink_tensor* tensor, int32_t root, shrink_error* error) {
  return guarded(error, [&] {
    if (tensor == nullptr || !tensor->tensor.defined()) {
      throw std::invalid_argument("broadcast of NULL");
    }
    shrink::Communicator& ranks = shrink::current_communicator();
    if (root < 0 || root >= ranks.world()) {
      throw std::invalid_argument("broadcast: root " + std::to_string(root) + " is not a rank");
    }
    std::vector<at::Tensor> tensors{tensor->tensor};
    ranks.broadcast(tensors, root, "a plugin's broadcast");
  });
}

int32_t is_training() { return shrink::detail::current_call_is_training() ? 1 : 0; }
int32_t is_calibrating() { return shrink::detail::current_call_is_calibrating() ? 1 : 0; }

const shrink_host_api kHostApi = {
    sizeof(shrink_host_api),
    SHRINK_ABI_VERSION_MAJOR,
    SHRINK_ABI_VERSION_MINOR,
    SHRINK_VERSION_STRING,
    &host_log,
    &tensor_create,
    &tensor_clone,
    &tensor_release,
    &tensor_ndim,
    &tensor_shape,
    &tensor_numel,
    &tensor_dtype,
    &tensor_data,
    &tensor_to_dlpack,
    &tensor_from_dlpack,
    &is_training,
    SHRINK_HOST_STABLE_STATE_HANDLES,  // QuantizerInstance keeps one handle per state tensor
    &is_calibrating,
    &tensor_const_data,
    &world_size,
    &rank,
    &all_reduce,
    &broadcast,
};

}  // namespace

namespace shrink {

const shrink_host_api* host_api() { return &kHostApi; }

}  // namespace shrink
