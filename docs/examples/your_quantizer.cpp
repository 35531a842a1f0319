// The seed's `YourQuantizer` and `ClipGrad` (NNI "Customize a new quantization algorithm"),
// translated to the Shrink SDK nearly line for line. Built and run by the tests
// (tests/sdk/seed_examples_test.cpp).
//
// NNI (Python)                                  Shrink (C++)
//   class YourQuantizer(Quantizer)               class YourQuantizer : public shrink::Quantizer
//   def quantize_weight(self, weight, config,    torch::Tensor quantize_weight(torch::Tensor
//   weight,
//                       **kwargs)                    const shrink::Config& config, shrink::Site&
//                       site)
//   class ClipGrad(QuantGrad)                    class ClipGrad : public shrink::QuantGrad
//   self.quant_grad = ClipGrad                   quant_grad = std::make_unique<ClipGrad>();
//
// The seed leaves `new_weight = ...` open; here it is a symmetric fake-quant to `quant_bits`
// (default 8) with the scale taken from the tensor's absolute maximum.
#include <shrink/sdk.hpp>

namespace {

torch::Tensor fake_quant_symmetric(const torch::Tensor& x, int64_t bits) {
  const double qmax = static_cast<double>((int64_t{1} << (bits - 1)) - 1);
  torch::Tensor scale = (x.abs().max() / qmax).clamp_min(1e-12);
  return (x / scale).round().clamp(-qmax, qmax) * scale;
}

class YourQuantizer : public shrink::Quantizer {
 public:
  explicit YourQuantizer(const shrink::Config& options) : Quantizer(options) {}

  // quantize should overload this method to quantize weight tensors.
  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config& config,
                                shrink::Site& site) override {
    (void)site;
    // Put your code to generate `new_weight` here
    torch::Tensor new_weight = fake_quant_symmetric(weight, config.get_int("quant_bits", 8));
    return new_weight;
  }

  // quantize should overload this method to quantize output.
  torch::Tensor quantize_output(torch::Tensor output, const shrink::Config& config,
                                shrink::Site& site) override {
    (void)site;
    torch::Tensor new_output = fake_quant_symmetric(output, config.get_int("quant_bits", 8));
    return new_output;
  }

  // quantize should overload this method to quantize input.
  torch::Tensor quantize_input(torch::Tensor input, const shrink::Config& config,
                               shrink::Site& site) override {
    (void)site;
    torch::Tensor new_input = fake_quant_symmetric(input, config.get_int("quant_bits", 8));
    return new_input;
  }

  void update_epoch(int epoch_num) override { (void)epoch_num; }

  // Can do some processing based on the model or weights bound to the sites.
  void step() override {}
};

class ClipGrad : public shrink::QuantGrad {
 public:
  torch::Tensor quant_backward(torch::Tensor tensor, torch::Tensor grad_output,
                               shrink::QuantType quant_type, shrink::Site& site) override {
    (void)site;
    // for quant_output function, set grad to zero if the absolute value of tensor is larger
    // than 1
    if (quant_type == shrink::QuantType::kOutput) {
      grad_output = grad_output.clone();
      grad_output.index_put_({tensor.abs() > 1}, 0);
    }
    return grad_output;
  }
};

class YourQuantizerWithClipGrad : public YourQuantizer {
 public:
  explicit YourQuantizerWithClipGrad(const shrink::Config& options) : YourQuantizer(options) {
    // set your customized backward function to overwrite default backward function
    quant_grad = std::make_unique<ClipGrad>();
  }
};

}  // namespace

SHRINK_PLUGIN("your_quantizer", "1.0.0") {
  plugin.quantizer<YourQuantizer>(
      "your_quantizer", "The seed's YourQuantizer (straight-through backward)", shrink::kTraining);
  plugin.quantizer<YourQuantizerWithClipGrad>(
      "your_quantizer_clip", "The seed's YourQuantizer with ClipGrad as its QuantGrad",
      shrink::kTraining | shrink::kQuantGrad);
}
