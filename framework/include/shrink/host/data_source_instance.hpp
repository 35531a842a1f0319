// The host side of a data-source plugin (ABI 1.6): one instance per split.
#pragma once

#include <shrink/core/options.hpp>
#include <shrink/host/plugin_registry.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace shrink {

class DataSourceInstance {
 public:
  // Creates the instance from `options` and asks what it holds. Throws shrink::Error naming the
  // plugin when it refuses its options or describes a shape that is no image.
  DataSourceInstance(const AlgorithmInfo& algorithm, const Options& options);
  ~DataSourceInstance();
  DataSourceInstance(const DataSourceInstance&) = delete;
  DataSourceInstance& operator=(const DataSourceInstance&) = delete;

  int64_t size() const { return size_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  // Sample `index`: its input (uint8 or float32, of shape()) and label. Safe from any thread.
  // Throws shrink::Error naming the plugin and the sample when the plugin fails or returns an
  // input of another shape or dtype.
  std::pair<at::Tensor, int64_t> get(int64_t index) const;
  const AlgorithmInfo& algorithm() const { return *algorithm_; }

 private:
  const AlgorithmInfo* algorithm_;
  void* handle_ = nullptr;
  int64_t size_ = 0;
  std::vector<int64_t> shape_;
};

}  // namespace shrink
