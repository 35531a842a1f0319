// A quantizer with a learnable per-site step size, for testing the host's handling of learnable
// state: y = round(x / s) * s, with QuantGrad
//   dL/dx = dL/dy                          (straight-through)
//   dL/ds = sum(dL/dy * (round(x/s) - x/s))  (LSQ's step-size gradient, without its scale factor)
// and a buffer counting forward calls.
#include <shrink/sdk.hpp>

namespace {

class StepGrad : public shrink::QuantGrad {
 public:
  torch::Tensor quant_backward(torch::Tensor tensor, torch::Tensor grad_output,
                               shrink::QuantType quant_type, shrink::Site& site) override {
    (void)quant_type;
    torch::Tensor s = site.state("step");
    torch::Tensor v = tensor / s;
    site.set_grad("step", (grad_output * (v.round() - v)).sum().reshape(s.sizes()));
    return grad_output;
  }
};

class LearnableStep : public shrink::Quantizer {
 public:
  explicit LearnableStep(const shrink::Config& options) : Quantizer(options) {
    quant_grad = std::make_unique<StepGrad>();
  }
  void setup_site(shrink::Site& site) override {
    shrink::log_info("set up site " + site.module_name() + "." + site.target());
    site.add_parameter("step", torch::full({1}, site.config().get_double("init_step", 0.5)));
    site.add_buffer("calls", torch::zeros({1}));
  }
  torch::Tensor quantize_input(torch::Tensor input, const shrink::Config& config,
                               shrink::Site& site) override {
    (void)config;
    site.state("calls").add_(1);
    torch::Tensor s = site.state("step");
    return (input / s).round() * s;
  }
  int epochs = 0;
};

}  // namespace

SHRINK_PLUGIN("learnable", "0.0.1") {
  plugin.quantizer<LearnableStep>("learnable_step", "Learnable step size (test only)",
                                  shrink::kTraining | shrink::kQuantGrad);
}
