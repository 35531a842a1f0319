// A quantizer written before distributed runs: it keeps the largest |x| each activation site saw
// in training, from its own rank's data, and never combines it with the other ranks' (no
// all_reduce). Identity otherwise. The host's check at each epoch end must name its first site.
#include <shrink/sdk.hpp>

namespace {

class UnsyncedRange : public shrink::Quantizer {
 public:
  explicit UnsyncedRange(const shrink::Config& options) : Quantizer(options) {}
  void setup_site(shrink::Site& site) override { site.add_buffer("seen_max", torch::zeros({1})); }
  torch::Tensor track(torch::Tensor x, shrink::Site& site) {
    if (shrink::is_training()) {
      torch::Tensor& seen = site.state("seen_max");
      seen.copy_(torch::maximum(seen, x.detach().abs().max().reshape({1})));
    }
    return x.clone();
  }
  torch::Tensor quantize_weight(torch::Tensor w, const shrink::Config&, shrink::Site&) override {
    return w.clone();
  }
  torch::Tensor quantize_input(torch::Tensor x, const shrink::Config&, shrink::Site& s) override {
    return track(x, s);
  }
  torch::Tensor quantize_output(torch::Tensor x, const shrink::Config&, shrink::Site& s) override {
    return track(x, s);
  }
};

}  // namespace

SHRINK_PLUGIN("unsynced_range", "0.0.1") {
  plugin.quantizer<UnsyncedRange>(
      "unsynced_range", "Tracks ranges of its rank's data only (test only)", shrink::kTraining);
}
