// The host side of a weight masker or pruner plugin.
#pragma once

#include <shrink/core/options.hpp>
#include <shrink/host/plugin_registry.hpp>
#include <shrink/results.hpp>

#include <ATen/core/Tensor.h>

#include <string>

namespace shrink {

// What the masker sees of one wrapped module (NNI's wrapper).
struct WrapperSpec {
  std::string module_name;
  std::string module_type;
  Options config;
  at::Tensor weight;
  at::Tensor bias;  // undefined when the module has no bias
  at::Tensor weight_grad;  // set for observe() only
  at::Tensor output_grad_product;  // [N, C]; observe() only, when observes_outputs()
};

class MaskerInstance {
 public:
  MaskerInstance(const AlgorithmInfo& algorithm, const Options& options);
  ~MaskerInstance();
  MaskerInstance(const MaskerInstance&) = delete;
  MaskerInstance& operator=(const MaskerInstance&) = delete;

  // NNI's calc_mask(sparsity, wrapper, wrapper_idx). Throws shrink::Error when the plugin fails
  // or returns a mask whose shape differs from the weight's.
  Masks calc_mask(double sparsity, const WrapperSpec& wrapper, int wrapper_idx);

  // The plugin's score per prunable unit (per output channel, or per weight), higher kept
  // longer; undefined when the plugin cannot rank (then no global sparsity). Throws
  // shrink::Error when the plugin fails or the scores fit neither shape.
  at::Tensor importance(const WrapperSpec& wrapper, int wrapper_idx);

  // Pruner hooks; no-ops for a plain masker.
  bool one_shot() const;
  void update_epoch(int epoch);
  void step();
  void observe(const WrapperSpec& wrapper, int wrapper_idx);  // wrapper.weight_grad set
  bool observes_outputs();  // the pruner wants output_grad_product in observe (ABI 1.4)
  double l1_penalty();  // 0: none

  const AlgorithmInfo& algorithm() const { return *algorithm_; }

 private:
  const AlgorithmInfo* algorithm_;
  void* handle_ = nullptr;
};

}  // namespace shrink
