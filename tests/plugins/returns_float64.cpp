// A plugin author's trap: quantize_weight returns float64 (a `torch::kDouble` slipped into the
// arithmetic). The host must refuse it at the boundary in one line naming plugin, site and dtype,
// not deep in the next convolution.
#include <shrink/sdk.hpp>

namespace {

class ReturnsFloat64 : public shrink::Quantizer {
 public:
  using Quantizer::Quantizer;
  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config&,
                                shrink::Site&) override {
    return weight.to(torch::kDouble).round();
  }
};

}  // namespace

SHRINK_PLUGIN("returns_float64", "0.0.1") {
  plugin.quantizer<ReturnsFloat64>("returns_float64", "Returns float64 weights (test only)",
                                   shrink::kTraining);
}
