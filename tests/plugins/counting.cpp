// An identity quantizer that counts what the host calls, for tests of wrapping and hooks: a
// per-site buffer `calls`, and process-wide counters of step() and update_epoch() calls exposed
// with the host's training flag in a per-site buffer `hooks` = [steps, epochs, training] so tests
// can read them through the host.
#include <shrink/sdk.hpp>

namespace {

class Counting : public shrink::Quantizer {
 public:
  explicit Counting(const shrink::Config& options) : Quantizer(options) {}
  void setup_site(shrink::Site& site) override {
    site.add_buffer("calls", torch::zeros({1}));
    site.add_buffer("hooks", torch::zeros({3}));  // [steps, epochs, training] at the last call
  }
  torch::Tensor count(torch::Tensor x, shrink::Site& site) {
    site.state("calls").add_(1);
    site.state("hooks").copy_(
        torch::tensor({static_cast<float>(steps_), static_cast<float>(epochs_),
                       shrink::is_training() ? 1.0f : 0.0f}));
    return x.clone();
  }
  torch::Tensor quantize_weight(torch::Tensor w, const shrink::Config&, shrink::Site& s) override {
    return count(w, s);
  }
  torch::Tensor quantize_input(torch::Tensor x, const shrink::Config&, shrink::Site& s) override {
    return count(x, s);
  }
  torch::Tensor quantize_output(torch::Tensor x, const shrink::Config&, shrink::Site& s) override {
    return count(x, s);
  }
  void step() override { ++steps_; }
  void update_epoch(int epoch) override { epochs_ = epoch + 1; }

 private:
  int steps_ = 0;
  int epochs_ = 0;
};

}  // namespace

SHRINK_PLUGIN("counting", "0.0.1") {
  plugin.quantizer<Counting>("counting", "Identity quantizer that counts calls (test only)",
                             shrink::kTraining);
}
