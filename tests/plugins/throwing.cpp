// Broken on purpose: an SDK plugin whose callbacks throw. The host must report the plugin's
// message and survive. Option `fail_create: true` makes the constructor throw too.
#include <shrink/sdk.hpp>

namespace {

class ThrowingQuantizer : public shrink::Quantizer {
 public:
  explicit ThrowingQuantizer(const shrink::Config& options) : Quantizer(options) {
    if (options.get_bool("fail_create", false)) {
      throw std::runtime_error("deliberate failure in the constructor");
    }
  }
  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config& config,
                                shrink::Site& site) override {
    (void)weight;
    (void)config;
    (void)site;
    throw std::runtime_error("deliberate failure in quantize_weight");
  }
  torch::Tensor quantize_output(torch::Tensor output, const shrink::Config& config,
                                shrink::Site& site) override {
    (void)config;
    (void)site;
    // A LibTorch error: shape mismatch.
    return output + torch::ones({output.numel() + 1});
  }
};

}  // namespace

SHRINK_PLUGIN("throwing", "0.0.1") {
  plugin.quantizer<ThrowingQuantizer>("throwing", "Throws from its callbacks (test only)",
                                      shrink::kTraining);
}
