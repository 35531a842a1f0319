// The host side of a quantizer plugin: one instance, its sites, and the autograd bridge.
#pragma once

#include <shrink/core/options.hpp>
#include <shrink/host/plugin_registry.hpp>
#include <shrink/quant_type.hpp>
#include <shrink/results.hpp>

#include <ATen/core/Tensor.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace shrink {

// One (module instance, target) pair to quantize.
struct SiteSpec {
  std::string module_name;  // "conv1", "layer1.0.conv1"
  std::string module_type;  // "Conv2d"
  std::string target;       // "weight", "bias", "_input_", "_output_"
  QuantType quant_type = QuantType::kWeight;
  Options config;     // the resolved config_list entry
  at::Tensor sample;  // current weight for weight/bias sites; may be undefined
};

// A state tensor declared by the plugin for one site.
struct SiteState {
  std::string name;
  bool learnable = false;    // a parameter the optimizer trains; otherwise a buffer
  bool weight_decay = true;  // a parameter the optimizer decays (not SHRINK_STATE_NO_WEIGHT_DECAY)
  at::Tensor value;
};

class QuantizerInstance {
 public:
  // Creates the plugin instance from its options; throws shrink::Error with the plugin's message.
  QuantizerInstance(const AlgorithmInfo& algorithm, const Options& options);
  ~QuantizerInstance();
  QuantizerInstance(const QuantizerInstance&) = delete;
  QuantizerInstance& operator=(const QuantizerInstance&) = delete;

  // Sets up one site; returns its index. The plugin validates the config and declares state.
  int add_site(const SiteSpec& spec);
  int site_count() const { return static_cast<int>(sites_.size()); }
  const SiteSpec& site_spec(int site) const;
  std::vector<SiteState>& site_state(int site);

  // Quantizes `x` at `site` (weight, input or output as the site says). Differentiable: the
  // backward is the plugin's QuantGrad, or the straight-through estimator when it has none;
  // learnable state receives gradients. The result's shape and dtype are checked against x's
  // (metadata: no host sync), its values too while check_values() is on; a failure throws
  // shrink::Error "plugin 'p' (quantizer 'a'), site conv1.weight: quantize_weight ...", recorded
  // for rethrow_one_line (core/one_line_error.hpp) when the call ran inside a TorchScript forward.
  at::Tensor quantize(int site, const at::Tensor& x);

  // Every learnable state tensor of every site, for the optimizer.
  std::vector<at::Tensor> parameters() const;
  // The learnable state with weight decay (`with_weight_decay`), or the state declared with
  // SHRINK_STATE_NO_WEIGHT_DECAY (`!with_weight_decay`): the optimizer's two parameter groups.
  std::vector<at::Tensor> parameters(bool with_weight_decay) const;

  // Whether quantize, its backward and export_site also check that results hold no NaN or inf.
  // Costs a host sync per call, so it is off in training unless `shrink run --check-plugins`
  // (set_value_checks_by_default in plugin_check.hpp) says otherwise; `shrink check` and the plan
  // check's dry run turn it on.
  void set_check_values(bool on) { check_values_ = on; }
  bool check_values() const { return check_values_; }

  void update_epoch(int epoch);
  void step();
  // Whether quantize calls belong to training (the plugin sees it as host->is_training()).
  void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }
  // Whether quantize calls belong to a calibration pass (host->is_calibrating()); the plugin
  // records statistics. end_calibration() then lets it turn them into quantization parameters,
  // site by site (a no-op for a plugin without that hook).
  void set_calibrating(bool calibrating) { calibrating_ = calibrating; }
  bool calibrating() const { return calibrating_; }
  void end_calibration();
  // Per-site quantization SQNR, one batch at a time: under kReference every quantize call returns
  // its input untouched (the whole model runs in float) and keeps it; under kCompare the same batch
  // runs quantized and each call adds to its site's signal and noise, both against the float
  // reference of the same call (the error the network has accumulated up to and through the site:
  // sqnr_db) and against its own input (the site's own quantization noise: local_sqnr_db).
  // 10 log10(signal / noise); NaN when the site saw nothing, inf when it changed nothing. Leaving
  // kOff starts from zero.
  enum class Measure { kOff, kReference, kCompare };
  void set_measuring(Measure mode);
  double sqnr_db(int site) const;
  double local_sqnr_db(int site) const;
  // The site's calibration, checked against the export contract of plugin_api.h (a scale of 1
  // element or one per channel, positive and finite, or undefined: the site stays in float; a
  // zero point of as many elements, finite, within [quant_min, quant_max]). Throws shrink::Error
  // naming the plugin and site otherwise.
  Calibration export_site(int site);

  bool has_quant_grad() const;
  // Whether the plugin takes tensors in any dense layout (SHRINK_INSTANCE_ANY_DENSE_LAYOUT).
  bool any_dense_layout() const;
  const AlgorithmInfo& algorithm() const { return *algorithm_; }

  // Process-wide id, for graphs that call this instance (the shrink::quantize op).
  int id() const { return id_; }
  // The live instance with this id, or nullptr.
  static QuantizerInstance* from_id(int64_t id);

  // Used by the autograd bridge; not for callers.
  at::Tensor forward_raw(int site, const at::Tensor& x);
  std::vector<at::Tensor> backward_raw(int site, const at::Tensor& x, const at::Tensor& grad);

 private:
  struct Site;
  // "plugin 'p' (quantizer 'a'), site conv1.weight: <call>".
  std::string where(int site, const char* call) const;
  // Throws (and records) "<where>: <what>".
  [[noreturn]] void fail(int site, const char* call, const std::string& what) const;
  void check_result(int site, const char* call, const at::Tensor& y, const at::Tensor& x) const;
  void check_calibration(int site, const Calibration& c) const;

  const AlgorithmInfo* algorithm_;
  void* handle_ = nullptr;
  uint32_t flags_ = 0;
  int id_ = -1;
  bool training_ = true;
  bool calibrating_ = false;
  bool check_values_ = false;
  Measure measuring_ = Measure::kOff;
  std::vector<std::unique_ptr<Site>> sites_;
};

}  // namespace shrink
