// A plugin author's trap on the masker side: importance divides by a norm that can be zero (NaN
// scores), and calc_mask returns them as the mask. Option `mistake`: `nan` (the default), `shape`
// (a mask of one value per filter), `int` (an int64 mask). The host must refuse each naming
// plugin and op.
#include <shrink/sdk.hpp>

namespace {

class NanMask : public shrink::WeightMasker {
 public:
  explicit NanMask(const shrink::Config& options)
      : WeightMasker(options), mistake_(options.get("mistake", "nan")) {}
  shrink::Masks calc_mask(double, const shrink::Wrapper& wrapper, int) override {
    if (mistake_ == "shape") return {torch::ones({wrapper.weight.size(0)})};
    if (mistake_ == "int") return {torch::ones(wrapper.weight.sizes(), torch::kLong)};
    return {torch::ones_like(wrapper.weight) * torch::zeros({}) / torch::zeros({})};
  }
  torch::Tensor importance(const shrink::Wrapper& wrapper, int) override {
    torch::Tensor norms = wrapper.weight.abs().sum({1, 2, 3});
    if (mistake_ != "nan") return norms;
    return norms / torch::zeros_like(norms);  // 0 / 0 for an all-zero layer, and here for all
  }

 private:
  std::string mistake_;
};

}  // namespace

SHRINK_PLUGIN("nan_mask", "0.0.1") {
  plugin.masker<NanMask>("nan_mask", "Returns NaN masks and scores (test only)");
}
