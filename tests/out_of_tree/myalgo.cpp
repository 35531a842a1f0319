// A third-party quantizer built out of tree: ternary weights (Li & Liu, Ternary Weight Networks).
//   t = 0.7 * mean|w|;  a = mean(|w| where |w| > t);  w_hat = a * sign(w) * (|w| > t)
#include <shrink/sdk.hpp>

namespace {

class Ternary : public shrink::Quantizer {
 public:
  explicit Ternary(const shrink::Config& options)
      : Quantizer(options), ratio_(options.get_double("threshold_ratio", 0.7)) {
    options.require_known_keys({"threshold_ratio"});
  }
  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config& config,
                                shrink::Site& site) override {
    (void)config;
    (void)site;
    torch::Tensor magnitude = weight.abs();
    torch::Tensor keep = magnitude > ratio_ * magnitude.mean();
    torch::Tensor alpha = (magnitude * keep).sum() / keep.sum().clamp_min(1);
    return alpha * weight.sign() * keep;
  }

 private:
  double ratio_;
};

}  // namespace

SHRINK_PLUGIN("myalgo", "0.1.0") {
  plugin.quantizer<Ternary>("ternary", "Ternary weights (out-of-tree example)", shrink::kTraining);
}
