// A plugin author's trap: export_site throws for an activation site it never saw data at. The host
// must report the plugin's message in one line naming plugin and site.
#include <shrink/sdk.hpp>

namespace {

class ThrowsInExport : public shrink::Quantizer {
 public:
  using Quantizer::Quantizer;
  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config&,
                                shrink::Site&) override {
    return weight;
  }
  shrink::Calibration export_site(shrink::Site& site) override {
    throw std::runtime_error("no range recorded for " + site.target());
  }
};

}  // namespace

SHRINK_PLUGIN("throws_in_export", "0.0.1") {
  plugin.quantizer<ThrowsInExport>("throws_in_export", "Throws from export_site (test only)",
                                   shrink::kTraining | shrink::kExport);
}
