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
  Options config;           // the resolved config_list entry
  at::Tensor sample;        // current weight for weight/bias sites; may be undefined
};

// A state tensor declared by the plugin for one site.
struct SiteState {
  std::string name;
  bool learnable = false;  // a parameter the optimizer trains; otherwise a buffer
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
  // learnable state receives gradients.
  at::Tensor quantize(int site, const at::Tensor& x);

  // Every learnable state tensor of every site, for the optimizer.
  std::vector<at::Tensor> parameters() const;

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
  std::string where(int site, const char* call) const;

  const AlgorithmInfo* algorithm_;
  void* handle_ = nullptr;
  uint32_t flags_ = 0;
  int id_ = -1;
  bool training_ = true;
  bool calibrating_ = false;
  Measure measuring_ = Measure::kOff;
  std::vector<std::unique_ptr<Site>> sites_;
};

}  // namespace shrink
