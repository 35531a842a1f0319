// A plugin author's trap: export_site returns a scale that is defined but wrong. Option `mistake`:
// `zero` (a scale of 0 for a site that saw no data, instead of none), `count` (3 scales for an
// 8-channel weight), `int` (an integer scale). The host must refuse each naming plugin and site;
// `none` (no scale: the site stays in float) is the contract's way and is accepted.
#include <shrink/sdk.hpp>

namespace {

class BadExportScale : public shrink::Quantizer {
 public:
  explicit BadExportScale(const shrink::Config& options)
      : Quantizer(options), mistake_(options.get("mistake", "zero")) {
    options.require_known_keys({"mistake"});
  }
  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config&,
                                shrink::Site&) override {
    return weight;
  }
  shrink::Calibration export_site(shrink::Site&) override {
    shrink::Calibration c;
    c.quant_bits = 8;
    c.quant_dtype = "int8";
    c.quant_scheme = "symmetric";
    if (mistake_ == "zero") c.scale = torch::zeros({});
    if (mistake_ == "count") c.scale = torch::full({3}, 0.1f);
    if (mistake_ == "int") c.scale = torch::ones({}, torch::kLong);
    return c;
  }

 private:
  std::string mistake_;
};

}  // namespace

SHRINK_PLUGIN("bad_export_scale", "0.0.1") {
  plugin.quantizer<BadExportScale>("bad_export_scale", "Exports a wrong scale (test only)",
                                   shrink::kTraining | shrink::kExport);
}
