// A PACT-like quantizer (Choi et al. 2018) as a plugin author writes one with ABI 1.5: activations
// clipped to [0, alpha] with a learnable alpha per site, declared without weight decay (decay would
// shrink the clipping bound towards zero), and a per-site key of its own, `alpha_init`, declared at
// registration so that a config_list may give it.
//   y = round(clamp(x, 0, alpha) / s) * s,  s = alpha / (2^bits - 1)
//   dL/dx = dL/dy where 0 <= x <= alpha, else 0;  dL/dalpha = sum of dL/dy where x > alpha
#include <shrink/sdk.hpp>

namespace {

class PactGrad : public shrink::QuantGrad {
 public:
  torch::Tensor quant_backward(torch::Tensor x, torch::Tensor grad, shrink::QuantType,
                               shrink::Site& site) override {
    const torch::Tensor alpha = site.state("alpha");
    site.set_grad("alpha", (grad * (x > alpha)).sum().reshape(alpha.sizes()));
    return grad * torch::logical_and(x >= 0, x <= alpha);
  }
};

class Pact : public shrink::Quantizer {
 public:
  explicit Pact(const shrink::Config& options) : Quantizer(options) {
    options.require_known_keys({});
    quant_grad = std::make_unique<PactGrad>();
  }
  void setup_site(shrink::Site& site) override {
    if (site.quant_type() == shrink::QuantType::kWeight) {
      throw shrink::Unsupported("pact quantizes activations; " + site.module_name() +
                                ".weight asks");
    }
    const double init = site.config().get_double("alpha_init", 6.0);
    site.add_parameter("alpha", torch::full({1}, init), shrink::kNoWeightDecay);
  }
  torch::Tensor quantize_input(torch::Tensor x, const shrink::Config& c,
                               shrink::Site& site) override {
    return quantize_output(x, c, site);
  }
  torch::Tensor quantize_output(torch::Tensor x, const shrink::Config& config,
                                shrink::Site& site) override {
    const torch::Tensor alpha = site.state("alpha");
    const double levels = static_cast<double>((int64_t{1} << config.get_int("quant_bits", 8)) - 1);
    const torch::Tensor s = alpha / levels;
    return (torch::minimum(torch::relu(x), alpha) / s).round() * s;
  }
};

}  // namespace

SHRINK_PLUGIN("pact", "0.0.1") {
  plugin
      .quantizer<Pact>("pact",
                       "PACT-like activations, learnable alpha without weight decay (test only)",
                       shrink::kTraining | shrink::kQuantGrad)
      .site_keys({"alpha_init"});
}
