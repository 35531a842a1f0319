#include <shrink/core/error.hpp>
#include <shrink/core/one_line_error.hpp>
#include <shrink/host/plugin_check.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <atomic>

namespace shrink {
namespace {

std::atomic<bool> g_value_checks{false};

// Puts a quantizer's modes back when a dry run ends, however it ends.
class QuantizerModes {
 public:
  explicit QuantizerModes(QuantizerInstance& q)
      : q_(q), training_(q.training()), calibrating_(q.calibrating()), values_(q.check_values()) {
    q_.set_check_values(true);
  }
  ~QuantizerModes() {
    q_.set_training(training_);
    q_.set_calibrating(calibrating_);
    q_.set_check_values(values_);
  }
  QuantizerModes(const QuantizerModes&) = delete;
  QuantizerModes& operator=(const QuantizerModes&) = delete;

 private:
  QuantizerInstance& q_;
  bool training_, calibrating_, values_;
};

// A site's input for the dry run: what the caller gave, or a weight site's own sample.
at::Tensor input_of(const QuantizerInstance& q, int site, const std::map<int, at::Tensor>& inputs) {
  auto it = inputs.find(site);
  if (it != inputs.end()) return it->second.detach();
  const SiteSpec& spec = q.site_spec(site);
  return spec.quant_type == QuantType::kWeight ? spec.sample.detach() : at::Tensor();
}

std::string site_where(const QuantizerInstance& q, int site) {
  const SiteSpec& spec = q.site_spec(site);
  return q.algorithm().display_name() + ", site " + spec.module_name + "." + spec.target;
}

// quantize and, in training, a backward; each learnable parameter of the site must then hold a
// gradient (its shape, dtype and values were checked when the plugin returned it).
void run_site(QuantizerInstance& q, SiteDryRun& r, bool backward) {
  if (!backward) {
    at::NoGradGuard no_grad;
    r.output = q.quantize(r.site, r.input).detach();
    return;
  }
  at::Tensor x = r.input.clone().requires_grad_(true);
  at::Tensor y = q.quantize(r.site, x);
  r.output = y.detach();
  if (!y.requires_grad()) return;
  y.backward(torch::ones_like(y));
  r.input_grad = x.grad();
  for (SiteState& s : q.site_state(r.site)) {
    if (!s.learnable) continue;
    if (!s.value.grad().defined()) {
      throw_one_line(site_where(q, r.site) + ": quant_backward gave learnable parameter '" +
                     s.name + "' no gradient (set it with site.set_grad)");
    }
    r.gradients.emplace_back(s.name, s.value.grad().clone());
    s.value.mutable_grad() = at::Tensor();
  }
}

}  // namespace

void set_value_checks_by_default(bool on) { g_value_checks = on; }
bool value_checks_by_default() { return g_value_checks; }

std::vector<SiteDryRun> dry_run(QuantizerInstance& q, const std::map<int, at::Tensor>& inputs) {
  QuantizerModes modes(q);
  const uint64_t caps = q.algorithm().capabilities;
  const bool trains = (caps & SHRINK_CAP_TRAINING) != 0;
  std::vector<SiteDryRun> runs(static_cast<std::size_t>(q.site_count()));
  bool every_site_has_input = true;
  for (int site = 0; site < q.site_count(); ++site) {
    runs[site].site = site;
    runs[site].input = input_of(q, site, inputs);
    every_site_has_input = every_site_has_input && runs[site].input.defined();
  }
  if (!trains && (caps & SHRINK_CAP_CALIBRATION) && every_site_has_input) {
    q.set_training(false);
    q.set_calibrating(true);
    {
      at::NoGradGuard no_grad;
      for (const auto& r : runs) q.quantize(r.site, r.input);
    }
    q.set_calibrating(false);
    q.end_calibration();
  }
  q.set_training(trains);
  q.set_calibrating(false);
  for (auto& r : runs) {
    if (r.input.defined()) run_site(q, r, trains);
  }
  if (caps & SHRINK_CAP_EXPORT) {
    for (auto& r : runs) {
      r.calibration = q.export_site(r.site);
      r.exported = true;
    }
  }
  return runs;
}

std::vector<WrapperDryRun> dry_run(MaskerInstance& masker, const std::vector<WrapperSpec>& wrappers,
                                   double sparsity) {
  struct ValueChecks {
    MaskerInstance& m;
    bool was;
    ~ValueChecks() { m.set_check_values(was); }
  } restore{masker, masker.check_values()};
  masker.set_check_values(true);
  if (masker.ranks_in_training()) {
    // Made-up statistics from a generator of its own: the run's seeded stream stays untouched.
    at::Generator gen = at::detail::createCPUGenerator(0);
    const bool outputs = masker.observes_outputs();
    for (std::size_t i = 0; i < wrappers.size(); ++i) {
      WrapperSpec w = wrappers[i];
      const at::TensorOptions options = w.weight.options().requires_grad(false);
      w.weight_grad = at::randn(w.weight.sizes(), gen, options);
      if (outputs) w.output_grad_product = at::randn({2, w.weight.size(0)}, gen, options);
      masker.observe(w, static_cast<int>(i));
    }
  }
  std::vector<WrapperDryRun> out(wrappers.size());
  for (std::size_t i = 0; i < wrappers.size(); ++i) {
    out[i].importance = masker.importance(wrappers[i], static_cast<int>(i));
    out[i].masks = masker.calc_mask(sparsity, wrappers[i], static_cast<int>(i));
  }
  return out;
}

}  // namespace shrink
