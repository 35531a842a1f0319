// A plugin author's trap: quantize_weight returns a flattened weight. The host must refuse it in
// one line naming plugin, site and both shapes.
#include <shrink/sdk.hpp>

namespace {

class ReturnsWrongShape : public shrink::Quantizer {
 public:
  using Quantizer::Quantizer;
  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config&,
                                shrink::Site&) override {
    return weight.reshape({weight.size(0), -1}).round();
  }
};

}  // namespace

SHRINK_PLUGIN("returns_wrong_shape", "0.0.1") {
  plugin.quantizer<ReturnsWrongShape>("returns_wrong_shape",
                                      "Returns a flattened weight (test only)", shrink::kTraining);
}
