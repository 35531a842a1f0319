// Quantization-aware training (Jacob et al. 2018), with the numerics of NNI's QAT quantizer.
//
// Per site, with qmin/qmax from the site's dtype (int: [-(2^(b-1)-1), 2^(b-1)-1], restricted as in
// NNI; uint: [0, 2^b-1]):
//   range    rmin = min(rmin, 0), rmax = max(rmax, 0)           (the range always contains 0)
//   affine   scale = (rmax - rmin) / (qmax - qmin),  zp = qmin - round(rmin / scale)
//   symmetric scale = max(|rmin|, |rmax|) / ((qmax - qmin) / 2), zp = 0 (int) or (qmin+qmax)/2
//   (uint) scale >= float eps; zp clamped to [qmin, qmax] fake-quant x_hat = (clamp(round(x / scale
//   + zp), qmin, qmax) - zp) * scale
// Weights use their current min/max (per tensor, or per output channel); inputs and outputs use
// ranges tracked by an EMA with decay 0.99, initialised by the first training batch; before
// `quant_start_step` optimizer steps only the ranges are tracked. The backward is straight-through
// with the gradient zeroed where x / scale + zp falls outside [qmin, qmax].
// Ranges and qparams are scalars (or one per channel) computed on the host side of the tensors;
// the element-wise work is one fused pass forward and one backward (fake_quant.hpp).
#include "fake_quant.hpp"

#include "../common/affine_range.hpp"

#include <shrink/sdk.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace {

// The shared range settings (bits, scheme, integer range), and quant_start_step.
struct SiteSettings : shrink_builtin::RangeSettings {
  int64_t quant_start_step = 0;
};

SiteSettings settings_of(const shrink::Site& site, bool reduce_range) {
  const shrink::Config& c = site.config();
  SiteSettings s;
  static_cast<shrink_builtin::RangeSettings&>(s) =
      shrink_builtin::range_settings(site, "qat", reduce_range);
  // `default` scheme and granularity: affine, per tensor.
  s.symmetric = c.get("quant_scheme", "affine") == "symmetric";
  s.per_channel = c.get("granularity", "default") == "per_channel";
  s.quant_start_step = c.get_int("quant_start_step", 0);
  if (s.quant_start_step < 0) {
    throw shrink::InvalidArgument("quant_start_step must be >= 0, got " +
                                  std::to_string(s.quant_start_step));
  }
  return s;
}

// Per-tensor: one min and max. Per-channel (weights): min and max of each output channel.
void min_max(const torch::Tensor& x, bool per_channel, std::vector<float>& rmin,
             std::vector<float>& rmax) {
  if (!per_channel) {
    const auto mm = qat::min_max(x);
    rmin.assign(1, mm.first);
    rmax.assign(1, mm.second);
    return;
  }
  torch::Tensor lo, hi;
  std::tie(lo, hi) = torch::aminmax(x.reshape({x.size(0), -1}), 1);
  lo = lo.contiguous();
  hi = hi.contiguous();
  rmin.assign(lo.data_ptr<float>(), lo.data_ptr<float>() + lo.numel());
  rmax.assign(hi.data_ptr<float>(), hi.data_ptr<float>() + hi.numel());
}

float* values(torch::Tensor& state) { return state.data_ptr<float>(); }
bool flag(shrink::Site& site, const char* name) { return values(site.state(name))[0] != 0.0f; }
void set_flag(shrink::Site& site, const char* name, bool on) {
  values(site.state(name))[0] = on ? 1.0f : 0.0f;
}

using shrink_builtin::compute_qparams;

// The site's current scale and zero point, for the kernels.
qat::QParams qparams_of(const SiteSettings& s, shrink::Site& site) {
  qat::QParams p;
  torch::Tensor& scale = site.state("scale");
  torch::Tensor& zero_point = site.state("zero_point");
  p.scale.assign(values(scale), values(scale) + scale.numel());
  p.zero_point.assign(values(zero_point), values(zero_point) + zero_point.numel());
  p.qmin = s.qmin;
  p.qmax = s.qmax;
  return p;
}

// x as the kernels take it: float32, dense in any layout (channels-last activations stay so), and
// contiguous for per-channel ranges, whose channels must be outermost in memory.
torch::Tensor float_input(const torch::Tensor& x, const shrink::Site& site, bool per_channel) {
  if (x.scalar_type() != torch::kFloat) {
    throw shrink::Unsupported("qat: " + site.module_name() + "." + site.target() +
                              " is not float32; qat quantizes float32 models");
  }
  return per_channel || !x.is_non_overlapping_and_dense() ? x.contiguous() : x;
}

// What the plugin keeps per site besides its declared state: the settings, parsed once in
// setup_site, and whether any forward since the last optimizer step clipped a value (when none
// did, the masked gradient is grad_output itself). Looked up by site.
struct SiteRuntime {
  SiteSettings settings;
  bool clipped = true;
};

class SiteTable {
 public:
  SiteRuntime& add(const shrink::Site& site, bool reduce_range) {
    return table_[&site] = SiteRuntime{settings_of(site, reduce_range)};
  }
  SiteRuntime& at(const shrink::Site& site) {
    auto it = table_.find(&site);
    if (it == table_.end()) throw shrink::InvalidArgument("qat: a site that was never set up");
    return it->second;
  }
  // A new optimizer step: forget what earlier forwards clipped.
  void new_step() {
    for (auto& entry : table_) entry.second.clipped = false;
  }

 private:
  std::unordered_map<const shrink::Site*, SiteRuntime> table_;
};

class QatGrad : public shrink::QuantGrad {
 public:
  explicit QatGrad(SiteTable& sites) : sites_(sites) {}

  torch::Tensor quant_backward(torch::Tensor tensor, torch::Tensor grad_output, shrink::QuantType,
                               shrink::Site& site) override {
    // A site that did not quantize in its last forward (no statistics yet, or before
    // quant_start_step), or whose forwards clipped nothing, passes the gradient through.
    const SiteRuntime& r = sites_.at(site);
    if (!flag(site, "active") || !r.clipped) return grad_output;
    return qat::fake_quantize_grad(float_input(tensor, site, r.settings.per_channel), grad_output,
                                   qparams_of(r.settings, site));
  }

 private:
  SiteTable& sites_;
};

class QatQuantizer : public shrink::Quantizer {
 public:
  explicit QatQuantizer(const shrink::Config& options) : Quantizer(options) {
    options.require_known_keys({"ema_decay", "reduce_range"});
    reduce_range_ = options.get_bool("reduce_range", false);
    ema_decay_ = options.get_double("ema_decay", 0.99);
    if (!(ema_decay_ >= 0.0 && ema_decay_ < 1.0)) {
      throw shrink::InvalidArgument("ema_decay must be in [0, 1), got " +
                                    options.get("ema_decay", ""));
    }
    quant_grad = std::make_unique<QatGrad>(sites_);
    any_dense_layout = true;  // element-wise kernels; results take their input's layout
  }

  void setup_site(shrink::Site& site) override {
    const SiteSettings& s = sites_.add(site, reduce_range_).settings;
    int64_t channels = 0;
    if (s.per_channel) {
      if (site.quant_type() != shrink::QuantType::kWeight) {
        throw shrink::Unsupported("qat: per_channel granularity is supported for weights only (" +
                                  site.module_name() + "." + site.target() + ")");
      }
      if (!site.sample().defined() || site.sample().dim() < 1) {
        throw shrink::InvalidArgument("qat: per_channel needs the weight of " + site.module_name());
      }
      channels = site.sample().size(0);
    }
    shrink_builtin::declare_range_state(site, channels);
    site.add_buffer("active", torch::zeros({}));  // 1 when the last forward quantized
  }

  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config&,
                                shrink::Site& site) override {
    SiteRuntime& r = sites_.at(site);
    const SiteSettings& s = r.settings;
    const bool training = shrink::is_training();
    if (training && steps_ < s.quant_start_step) return deactivate(site, weight);
    torch::Tensor w = float_input(weight, site, s.per_channel);
    // Weights: the current range, in training and whenever no step has recorded one (so that
    // evaluation before any training step is well defined).
    if (training || !flag(site, "observed")) {
      std::vector<float> rmin, rmax;
      min_max(w, s.per_channel, rmin, rmax);
      record_range(site, rmin, rmax);
      compute_qparams(s, rmin.data(), rmax.data(), static_cast<int64_t>(rmin.size()),
                      values(site.state("scale")), values(site.state("zero_point")));
    }
    return quantize_with_state(w, site, r);
  }

  torch::Tensor quantize_input(torch::Tensor input, const shrink::Config&,
                               shrink::Site& site) override {
    return quantize_activation(input, site);
  }
  torch::Tensor quantize_output(torch::Tensor output, const shrink::Config&,
                                shrink::Site& site) override {
    return quantize_activation(output, site);
  }

  void step() override {
    ++steps_;
    sites_.new_step();
  }

  shrink::Calibration export_site(shrink::Site& site) override {
    return shrink_builtin::export_range_state(site, sites_.at(site).settings);
  }

 private:
  // The global batch's range (every rank's share of it), so that the EMA, and the state, are the
  // same on every rank: one all-reduce of max(-min, max).
  static void global_range(std::vector<float>& rmin, std::vector<float>& rmax) {
    if (shrink::world_size() <= 1) return;
    torch::Tensor t = torch::tensor({-rmin[0], rmax[0]});
    shrink::all_reduce(t, shrink::Reduce::kMax);
    rmin[0] = -t[0].item<float>();
    rmax[0] = t[1].item<float>();
  }

  torch::Tensor quantize_activation(const torch::Tensor& input, shrink::Site& site) {
    SiteRuntime& r = sites_.at(site);
    const SiteSettings& s = r.settings;
    torch::Tensor x = float_input(input, site, false);
    if (shrink::is_training()) {
      std::vector<float> rmin, rmax;
      min_max(x, false, rmin, rmax);
      global_range(rmin, rmax);
      float* tracked_min = values(site.state("tracked_min"));
      float* tracked_max = values(site.state("tracked_max"));
      if (!flag(site, "observed")) {
        record_range(site, rmin, rmax);
      } else {
        // tracked = decay * tracked + (1 - decay) * current, in float32 as NNI's tensors do.
        const float decay = static_cast<float>(ema_decay_);
        const float rest = static_cast<float>(1.0 - ema_decay_);
        tracked_min[0] = tracked_min[0] * decay + rmin[0] * rest;
        tracked_max[0] = tracked_max[0] * decay + rmax[0] * rest;
      }
      if (steps_ < s.quant_start_step) return deactivate(site, input);
      compute_qparams(s, tracked_min, tracked_max, 1, values(site.state("scale")),
                      values(site.state("zero_point")));
    } else if (!flag(site, "observed")) {
      // Evaluation before any training batch: no range yet, nothing to quantize with.
      return deactivate(site, input);
    }
    return quantize_with_state(x, site, r);
  }

  static torch::Tensor quantize_with_state(const torch::Tensor& x, shrink::Site& site,
                                           SiteRuntime& r) {
    set_flag(site, "active", true);
    int64_t clipped = 0;
    torch::Tensor y = qat::fake_quantize(x, qparams_of(r.settings, site), &clipped);
    r.clipped = r.clipped || clipped > 0;
    return y;
  }

  static void record_range(shrink::Site& site, const std::vector<float>& rmin,
                           const std::vector<float>& rmax) {
    torch::Tensor& tracked_min = site.state("tracked_min");
    if (tracked_min.numel() != static_cast<int64_t>(rmin.size())) {
      throw shrink::InvalidArgument("qat: " + site.module_name() + "." + site.target() + " has " +
                                    std::to_string(rmin.size()) +
                                    " channels, its state was set up for " +
                                    std::to_string(tracked_min.numel()));
    }
    std::copy(rmin.begin(), rmin.end(), values(tracked_min));
    std::copy(rmax.begin(), rmax.end(), values(site.state("tracked_max")));
    set_flag(site, "observed", true);
  }

  static torch::Tensor deactivate(shrink::Site& site, const torch::Tensor& x) {
    set_flag(site, "active", false);
    return x;
  }

  SiteTable sites_;
  double ema_decay_ = 0.99;
  bool reduce_range_ = false;
  int64_t steps_ = 1;  // NNI counts optimizer steps from 1
};

}  // namespace

SHRINK_PLUGIN("qat", "1.0.0") {
  plugin
      .quantizer<QatQuantizer>(
          "qat", "Quantization-aware training (Jacob et al.), NNI's QAT quantizer numerics",
          shrink::kTraining | shrink::kExport | shrink::kQuantGrad)
      .site_keys({"quant_start_step"});
}
