// NNI's Naive quantizer: weights to 8 bits, symmetric, per tensor, no config needed.
//
//   new_scale = max|W| / 127
//   scale     = max(scale so far, new_scale)        (kept per site, never shrinks)
//   W_hat     = trunc(W / scale) * scale            (NNI casts to int8, which truncates)
#include <shrink/sdk.hpp>

#include <cmath>

namespace {

constexpr int kBits = 8;
constexpr double kQmax = 127.0;  // 2^(bits-1) - 1

class NaiveQuantizer : public shrink::Quantizer {
 public:
  explicit NaiveQuantizer(const shrink::Config& options) : Quantizer(options) {
    options.require_known_keys({});
  }

  void setup_site(shrink::Site& site) override {
    if (site.quant_type() != shrink::QuantType::kWeight) {
      throw shrink::Unsupported("naive quantizes weights only; site " + site.module_name() + "." +
                                site.target() + " asks for " + site.target());
    }
    // NNI 2.x: quant_bits may be an int or a per-type map; naive supports 8 only.
    for (const char* key : {"quant_bits", "quant_bits.weight"}) {
      if (site.config().has(key) && site.config().get_int(key, kBits) != kBits) {
        throw shrink::InvalidArgument(std::string("naive supports quant_bits 8 only, got ") +
                                      site.config().get(key, ""));
      }
    }
    site.add_buffer("scale", torch::zeros({}));
  }

  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config& config,
                                shrink::Site& site) override {
    (void)config;
    torch::Tensor& scale = site.state("scale");
    torch::Tensor new_scale = weight.abs().max() / kQmax;
    scale.copy_(torch::maximum(scale, new_scale));
    // An all-zero weight has scale 0: leave it as it is.
    torch::Tensor safe = torch::where(scale > 0, scale, torch::ones_like(scale));
    return (weight / safe).trunc() * safe;
  }

  shrink::Calibration export_site(shrink::Site& site) override {
    shrink::Calibration c;
    // Scale 0: never quantized, or an all-zero weight; no scale leaves the site in float.
    if (site.state("scale").item<float>() > 0.0f) {
      c.scale = site.state("scale").clone();
      c.zero_point = torch::zeros({});
    }
    c.quant_bits = kBits;
    c.quant_dtype = "int8";
    c.quant_scheme = "symmetric";
    const double s = site.state("scale").item<double>();
    c.tracked_min = -s * kQmax;
    c.tracked_max = s * kQmax;
    c.quant_min = -static_cast<int64_t>(kQmax);
    c.quant_max = static_cast<int64_t>(kQmax);
    return c;
  }
};

}  // namespace

SHRINK_PLUGIN("naive", "1.0.0") {
  plugin.quantizer<NaiveQuantizer>(
      "naive", "NNI's Naive quantizer: weights to 8-bit symmetric, per tensor, truncating",
      shrink::kCalibration | shrink::kExport);
}
