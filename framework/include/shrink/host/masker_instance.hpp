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
  at::Tensor bias;                 // undefined when the module has no bias
  at::Tensor weight_grad;          // set for observe() only
  at::Tensor output_grad_product;  // [N, C]; observe() only, when observes_outputs()
};

class MaskerInstance {
 public:
  MaskerInstance(const AlgorithmInfo& algorithm, const Options& options);
  ~MaskerInstance();
  MaskerInstance(const MaskerInstance&) = delete;
  MaskerInstance& operator=(const MaskerInstance&) = delete;

  // NNI's calc_mask(sparsity, wrapper, wrapper_idx). Throws shrink::Error naming the plugin and
  // op ("plugin 'p' (pruner 'a'), op conv1: calc_mask ...") when the plugin fails or returns a
  // mask whose shape differs from the weight's or whose dtype is neither floating point nor bool,
  // or, while check_values() is on, one holding NaN or inf.
  Masks calc_mask(double sparsity, const WrapperSpec& wrapper, int wrapper_idx);

  // The plugin's score per prunable unit (per output channel, or per weight), higher kept
  // longer; undefined when the plugin cannot rank (then no global sparsity). Throws
  // shrink::Error when the plugin fails, the scores fit neither shape or are not floating point,
  // or (check_values()) hold NaN or inf.
  at::Tensor importance(const WrapperSpec& wrapper, int wrapper_idx);

  // Whether calc_mask and importance check their results' values (a host sync per call): off
  // unless set_value_checks_by_default (plugin_check.hpp) says otherwise.
  void set_check_values(bool on) { check_values_ = on; }
  bool check_values() const { return check_values_; }

  // Pruner hooks; no-ops for a plain masker.
  // Ranks by what it observes in training: AlgorithmInfo::ranks_in_training().
  bool ranks_in_training() const { return algorithm_->ranks_in_training(); }
  void update_epoch(int epoch);
  void step();
  void observe(const WrapperSpec& wrapper, int wrapper_idx);  // wrapper.weight_grad set
  bool observes_outputs();  // the pruner wants output_grad_product in observe (ABI 1.4)
  double l1_penalty();      // 0: none

  const AlgorithmInfo& algorithm() const { return *algorithm_; }

 private:
  // "plugin 'p' (pruner 'a'), op conv1: <call>".
  std::string where(const WrapperSpec& wrapper, const char* call) const;
  [[noreturn]] void fail(const WrapperSpec& wrapper, const char* call,
                         const std::string& what) const;
  void check_values_of(const WrapperSpec& wrapper, const char* call, const at::Tensor& t) const;

  const AlgorithmInfo* algorithm_;
  void* handle_ = nullptr;
  bool check_values_ = false;
};

}  // namespace shrink
