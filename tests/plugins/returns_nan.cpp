// A plugin author's trap: quantize_weight divides by a scale that can be zero and returns NaN. With
// value checks on (shrink check, the plan check, shrink run --check-plugins) the host must say so
// naming plugin and site, instead of "max |w_hat - w| = -nan" or a loss blamed on the learning
// rate.
#include <shrink/sdk.hpp>

namespace {

class ReturnsNan : public shrink::Quantizer {
 public:
  using Quantizer::Quantizer;
  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config&,
                                shrink::Site&) override {
    torch::Tensor scale = torch::zeros({});  // "computed" from a range never recorded
    return (weight / scale).round() * scale;
  }
};

}  // namespace

SHRINK_PLUGIN("returns_nan", "0.0.1") {
  plugin.quantizer<ReturnsNan>("returns_nan", "Returns NaN weights (test only)", shrink::kTraining);
}
