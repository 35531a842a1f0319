// DoReFa-Net (Zhou et al. 2016) quantizer, written against the public SDK only.
//
// quantize_k(r) = round(r * (2^k - 1)) / (2^k - 1) for r in [0, 1], with k = the site's quant_bits.
//   weights      t = tanh(w),  w_hat = 2 * quantize_k(t / (2 * max|t|) + 1/2) - 1      (in [-1, 1])
//   activations  a_hat = quantize_k(clamp(a, 0, 1))
// Backward, straight-through for the rounding (quantize_k's derivative taken as 1):
//   weights      dL/dw = dL/dw_hat * (1 - t^2) / max|t|     (max|t| held constant, as the paper)
//   activations  dL/da = dL/da_hat where 0 <= a <= 1, else 0
// Weights take 1 to 8 bits (1: the sign of the normalised weight), activations 1 to 8.
//
// Option `weight_scale`: `none` (the paper: weights in [-1, 1], for networks whose BatchNorm after
// each layer absorbs the scale) or `max_abs` (w_hat times max|w|, the layer's own range kept, for
// networks without a BatchNorm after every layer such as NNI's quick-start net, where [-1, 1]
// weights blow the activations up; the backward scales alike).
//
// Nothing
// to export: w_hat is not an affine quantization of w (the tanh), so this plugin has no calibration
// to write and model_qat.pt is not written for it (set export.model: false).
#include <shrink/sdk.hpp>

#include <cmath>
#include <string>
#include <unordered_map>

namespace {

int bits_of(const shrink::Site& site) {
  const int bits = static_cast<int>(site.config().get_int("quant_bits", 8));
  if (bits < 1 || bits > 8) {
    throw shrink::Unsupported("dorefa supports 1 to 8 bits; " + site.module_name() + "." +
                              site.target() + " asks for " + std::to_string(bits));
  }
  return bits;
}

torch::Tensor quantize_k(const torch::Tensor& r, int bits) {
  const double n = std::ldexp(1.0, bits) - 1;
  return (r * n).round() / n;
}

// The factor w_hat is multiplied by: 1, or max|w|.
torch::Tensor weight_gain(const torch::Tensor& w, bool max_abs) {
  return max_abs ? w.abs().max() : torch::ones({}, w.options());
}

class DorefaGrad : public shrink::QuantGrad {
 public:
  explicit DorefaGrad(const bool& max_abs) : max_abs_(max_abs) {}
  torch::Tensor quant_backward(torch::Tensor x, torch::Tensor grad, shrink::QuantType type,
                               shrink::Site&) override {
    if (type == shrink::QuantType::kWeight) {
      const torch::Tensor t = torch::tanh(x);
      const torch::Tensor max = t.abs().max().clamp_min(1e-12);
      return grad * (1 - t * t) / max * weight_gain(x, max_abs_);
    }
    return grad * torch::logical_and(x >= 0, x <= 1);
  }

 private:
  const bool& max_abs_;
};

class DorefaQuantizer : public shrink::Quantizer {
 public:
  explicit DorefaQuantizer(const shrink::Config& options) : Quantizer(options) {
    options.require_known_keys({"weight_scale"});
    const std::string scale = options.get("weight_scale", "none");
    if (scale != "none" && scale != "max_abs") {
      throw shrink::InvalidArgument("weight_scale is '" + scale + "' (allowed: none, max_abs)");
    }
    max_abs_ = scale == "max_abs";
    quant_grad = std::make_unique<DorefaGrad>(max_abs_);
  }

  void setup_site(shrink::Site& site) override { bits_[&site] = bits_of(site); }

  torch::Tensor quantize_weight(torch::Tensor w, const shrink::Config&,
                                shrink::Site& site) override {
    const torch::Tensor t = torch::tanh(w);
    const torch::Tensor max = t.abs().max().clamp_min(1e-12);
    return (2 * quantize_k(t / (2 * max) + 0.5, bits_.at(&site)) - 1) * weight_gain(w, max_abs_);
  }
  torch::Tensor quantize_input(torch::Tensor x, const shrink::Config&,
                               shrink::Site& site) override {
    return quantize_k(x.clamp(0, 1), bits_.at(&site));
  }
  torch::Tensor quantize_output(torch::Tensor x, const shrink::Config&,
                                shrink::Site& site) override {
    return quantize_k(x.clamp(0, 1), bits_.at(&site));
  }

 private:
  std::unordered_map<const shrink::Site*, int> bits_;
  bool max_abs_ = false;
};

}  // namespace

SHRINK_PLUGIN("dorefa", "1.0.0") {
  plugin.quantizer<DorefaQuantizer>(
      "dorefa",
      "DoReFa-Net (Zhou et al.): tanh-normalised k-bit weights, [0, 1]-clipped k-bit activations",
      shrink::kTraining | shrink::kQuantGrad);
}
