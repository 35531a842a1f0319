// Binarized Neural Networks (Courbariaux, Hubara et al. 2016), written against the public SDK only.
//
//   forward   x_hat = sign(x), with sign(0) = +1, for weights and activations alike
//   backward  dL/dx = dL/dx_hat where |x| <= 1, else 0       (the straight-through estimator with
//             the paper's saturation, a QuantGrad)
//   step      after each optimizer step the real-valued weights are clamped to [-1, 1] (the paper's
//             clip; past it a weight's gradient would be zero for good)
// quant_bits must be 1 (`quant_bits: 1` in its config_list entries). Made for Hardtanh activations
// (whose output is in [-1, 1]), as the paper's networks have. Nothing to export: +-1 is not an
// 8-bit affine grid, so model_qat.pt and int8 export are not written for it (set export.model:
// false).
//
// The step hook needs the weights: quantize_weight's input shares memory with the module's
// parameter (the host passes it without a copy), so the plugin keeps it and clamps it in place.
#include <shrink/sdk.hpp>

#include <string>
#include <unordered_map>

namespace {

class BnnGrad : public shrink::QuantGrad {
 public:
  torch::Tensor quant_backward(torch::Tensor x, torch::Tensor grad, shrink::QuantType,
                               shrink::Site&) override {
    return grad * (x.abs() <= 1);
  }
};

torch::Tensor binarize(const torch::Tensor& x) {
  return torch::where(x >= 0, torch::ones_like(x), -torch::ones_like(x));
}

class BnnQuantizer : public shrink::Quantizer {
 public:
  explicit BnnQuantizer(const shrink::Config& options) : Quantizer(options) {
    options.require_known_keys({});
    quant_grad = std::make_unique<BnnGrad>();
  }

  void setup_site(shrink::Site& site) override {
    // The host resolves an unset quant_bits to 8, so 1 has to be asked for.
    if (site.config().get_int("quant_bits", 8) != 1) {
      throw shrink::Unsupported(
          "bnn binarizes to 1 bit: set quant_bits: 1 in the config_list entry for " +
          site.module_name() + "." + site.target() + " (it has quant_bits " +
          site.config().get("quant_bits", "8") + ")");
    }
  }

  torch::Tensor quantize_weight(torch::Tensor w, const shrink::Config&,
                                shrink::Site& site) override {
    if (shrink::is_training()) weights_[&site] = w;  // the parameter's memory, for step()
    return binarize(w);
  }
  torch::Tensor quantize_input(torch::Tensor x, const shrink::Config&, shrink::Site&) override {
    return binarize(x);
  }
  torch::Tensor quantize_output(torch::Tensor x, const shrink::Config&, shrink::Site&) override {
    return binarize(x);
  }

  void step() override {
    for (auto& entry : weights_) entry.second.clamp_(-1, 1);
  }

 private:
  std::unordered_map<const shrink::Site*, torch::Tensor> weights_;
};

}  // namespace

SHRINK_PLUGIN("bnn", "1.0.0") {
  plugin.quantizer<BnnQuantizer>(
      "bnn",
      "Binarized Neural Networks (Hubara et al.): weights and activations to +-1, clipped weights",
      shrink::kTraining | shrink::kQuantGrad);
}
