#include <shrink/core/error.hpp>
#include <shrink/host/data_source_instance.hpp>

#include "host/tensor_handle.hpp"

#include <ATen/ATen.h>

namespace shrink {

using detail::make_error;
using detail::take_handle;

DataSourceInstance::DataSourceInstance(const AlgorithmInfo& algorithm, const Options& options)
    : algorithm_(&algorithm) {
  SHRINK_CHECK(algorithm.is_data_source(), "algorithm '" << algorithm.name << "' is a "
                                                         << algorithm.kinds_text()
                                                         << ", not a data source");
  OptionsView view(options);
  shrink_instance instance{sizeof(shrink_instance), nullptr, 0};
  shrink_error error = make_error();
  SHRINK_CHECK(algorithm.descriptor->create(view.get(), &instance, &error) == SHRINK_STATUS_OK,
               algorithm.display_name() << " rejected its options: " << error.message);
  handle_ = instance.handle;
  int64_t count = 0;
  int32_t ndim = 0;
  int64_t shape[SHRINK_DATA_SOURCE_MAX_DIMS] = {};
  error = make_error();
  const shrink_status status =
      algorithm.descriptor->data_source->describe(handle_, &count, &ndim, shape, &error);
  if (status != SHRINK_STATUS_OK) {
    algorithm.descriptor->destroy(handle_);
    throw Error(algorithm.display_name() + ": describe failed: " + error.message);
  }
  const bool image = ndim == 2 || ndim == 3;
  for (int32_t d = 0; image && d < ndim; ++d) shape_.push_back(shape[d]);
  const bool positive =
      image && std::all_of(shape_.begin(), shape_.end(), [](int64_t s) { return s > 0; });
  if (!positive || count < 0) {
    algorithm.descriptor->destroy(handle_);
    throw Error(algorithm.display_name() + ": describe gave " + std::to_string(count) +
                " samples of " + std::to_string(ndim) +
                " dimensions; expected a count >= 0 and [C, H, W] or [H, W] of positive sizes");
  }
  size_ = count;
}

DataSourceInstance::~DataSourceInstance() {
  if (handle_ != nullptr) algorithm_->descriptor->destroy(handle_);
}

std::pair<at::Tensor, int64_t> DataSourceInstance::get(int64_t index) const {
  shrink_tensor* out = nullptr;
  int64_t label = -1;
  shrink_error error = make_error();
  const std::string where = algorithm_->display_name() + ", sample " + std::to_string(index);
  const shrink_status status =
      algorithm_->descriptor->data_source->get(handle_, index, &out, &label, &error);
  if (status != SHRINK_STATUS_OK) {
    if (out != nullptr) take_handle(out);
    throw Error(where + ": get failed: " + error.message);
  }
  SHRINK_CHECK(out != nullptr, where << ": get returned no input");
  const at::Tensor input = take_handle(out);
  SHRINK_CHECK(input.sizes() == c10::IntArrayRef(shape_),
               where << ": get returned an input of shape " << input.sizes() << ", describe said "
                     << c10::IntArrayRef(shape_));
  SHRINK_CHECK(input.scalar_type() == at::kByte || input.scalar_type() == at::kFloat,
               where << ": get returned a " << c10::toString(input.scalar_type())
                     << " input, expected uint8 or float32");
  return {input, label};
}

}  // namespace shrink
