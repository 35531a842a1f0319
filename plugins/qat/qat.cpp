// Quantization-aware training (Jacob et al. 2018), with the numerics of NNI's QAT quantizer.
//
// Per site, with qmin/qmax from the site's dtype (int: [-(2^(b-1)-1), 2^(b-1)-1], restricted as in
// NNI; uint: [0, 2^b-1]):
//   range    rmin = min(rmin, 0), rmax = max(rmax, 0)           (the range always contains 0)
//   affine   scale = (rmax - rmin) / (qmax - qmin),  zp = qmin - round(rmin / scale)
//   symmetric scale = max(|rmin|, |rmax|) / ((qmax - qmin) / 2), zp = 0 (int) or (qmin+qmax)/2 (uint)
//   scale >= float eps; zp clamped to [qmin, qmax]
//   fake-quant x_hat = (clamp(round(x / scale + zp), qmin, qmax) - zp) * scale
// Weights use their current min/max (per tensor, or per output channel); inputs and outputs use
// ranges tracked by an EMA with decay 0.99, initialised by the first training batch; before
// `quant_start_step` optimizer steps only the ranges are tracked. The backward is straight-through
// with the gradient zeroed where x / scale + zp falls outside [qmin, qmax].
#include <shrink/sdk.hpp>

#include <cmath>
#include <limits>

namespace {

struct SiteSettings {
  int bits = 8;
  bool is_signed = true;
  bool symmetric = false;
  bool per_channel = false;
  int64_t quant_start_step = 0;
  double qmin = 0;
  double qmax = 0;
};

SiteSettings settings_of(const shrink::Site& site) {
  const shrink::Config& c = site.config();
  SiteSettings s;
  s.bits = static_cast<int>(c.get_int("quant_bits", 8));
  const std::string dtype = c.get("quant_dtype", "int8");
  s.is_signed = dtype.rfind("uint", 0) != 0;
  s.symmetric = c.get("quant_scheme", "affine") == "symmetric";
  s.per_channel = c.get("granularity", "default") == "per_channel";
  s.quant_start_step = c.get_int("quant_start_step", 0);
  if (s.bits < 2 || s.bits > 8) {
    throw shrink::Unsupported("qat supports 2 to 8 bits; " + site.module_name() + "." +
                              site.target() + " asks for " + std::to_string(s.bits));
  }
  if (s.quant_start_step < 0) {
    throw shrink::InvalidArgument("quant_start_step must be >= 0, got " +
                                  std::to_string(s.quant_start_step));
  }
  if (s.is_signed) {
    s.qmax = std::pow(2.0, s.bits - 1) - 1;
    s.qmin = -s.qmax;
  } else {
    s.qmin = 0;
    s.qmax = std::pow(2.0, s.bits) - 1;
  }
  return s;
}

// The channel axis of per-channel ranges: output channels of a weight, channels of an activation.
int64_t channel_axis(shrink::QuantType type) { return type == shrink::QuantType::kWeight ? 0 : 1; }

// Per-tensor: scalar min/max. Per-channel: min/max over all dims but `axis`, shape [C].
std::pair<torch::Tensor, torch::Tensor> min_max(const torch::Tensor& x, bool per_channel,
                                                int64_t axis) {
  if (!per_channel) {
    auto mm = torch::aminmax(x);
    return {std::get<0>(mm), std::get<1>(mm)};
  }
  torch::Tensor moved = x.transpose(0, axis).reshape({x.size(axis), -1});
  auto mm = torch::aminmax(moved, 1);
  return {std::get<0>(mm), std::get<1>(mm)};
}

// Writes scale and zero point (float tensors shaped like rmin) for the range [rmin, rmax].
void compute_qparams(const SiteSettings& s, const torch::Tensor& rmin_in, const torch::Tensor& rmax_in,
                     torch::Tensor& scale, torch::Tensor& zero_point) {
  torch::Tensor rmin = torch::clamp_max(rmin_in, 0.0);
  torch::Tensor rmax = torch::clamp_min(rmax_in, 0.0);
  const double eps = std::numeric_limits<float>::epsilon();
  if (s.symmetric) {
    torch::Tensor bound = torch::maximum(rmin.abs(), rmax.abs());
    scale.copy_(torch::clamp_min(bound / ((s.qmax - s.qmin) / 2.0), eps));
    zero_point.fill_(s.is_signed ? 0.0 : std::floor((s.qmin + s.qmax) / 2.0));
  } else {
    scale.copy_(torch::clamp_min((rmax - rmin) / (s.qmax - s.qmin), eps));
    zero_point.copy_(torch::clamp(s.qmin - torch::round(rmin / scale), s.qmin, s.qmax));
  }
}

// Shape [C] qparams broadcast against x along `axis`.
torch::Tensor along(const torch::Tensor& q, const torch::Tensor& x, int64_t axis) {
  if (q.dim() == 0) return q;
  std::vector<int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[static_cast<std::size_t>(axis)] = q.numel();
  return q.reshape(shape);
}

torch::Tensor fake_quantize(const SiteSettings& s, const torch::Tensor& x, const torch::Tensor& scale,
                            const torch::Tensor& zero_point, int64_t axis) {
  const auto qmin = static_cast<int64_t>(s.qmin);
  const auto qmax = static_cast<int64_t>(s.qmax);
  if (scale.dim() == 0) {
    return torch::fake_quantize_per_tensor_affine(x, scale.reshape({1}),
                                                  zero_point.reshape({1}).to(torch::kInt),
                                                  qmin, qmax);
  }
  return torch::fake_quantize_per_channel_affine(x, scale, zero_point.to(torch::kInt), axis, qmin,
                                                 qmax);
}

class QatGrad : public shrink::QuantGrad {
 public:
  torch::Tensor quant_backward(torch::Tensor tensor, torch::Tensor grad_output,
                               shrink::QuantType quant_type, shrink::Site& site) override {
    torch::Tensor scale = site.state("scale");
    // A site that did not quantize in its last forward (no statistics yet, or before
    // quant_start_step) passes the gradient through.
    if (site.state("active").item<float>() == 0.0f) return grad_output;
    const SiteSettings s = settings_of(site);
    const int64_t axis = channel_axis(quant_type);
    torch::Tensor v = tensor / along(scale, tensor, axis) + along(site.state("zero_point"), tensor, axis);
    return grad_output * ((v >= s.qmin) & (v <= s.qmax)).to(grad_output.scalar_type());
  }
};

class QatQuantizer : public shrink::Quantizer {
 public:
  explicit QatQuantizer(const shrink::Config& options) : Quantizer(options) {
    options.require_known_keys({"ema_decay"});
    ema_decay_ = options.get_double("ema_decay", 0.99);
    if (!(ema_decay_ >= 0.0 && ema_decay_ < 1.0)) {
      throw shrink::InvalidArgument("ema_decay must be in [0, 1), got " + options.get("ema_decay", ""));
    }
    quant_grad = std::make_unique<QatGrad>();
  }

  void setup_site(shrink::Site& site) override {
    const SiteSettings s = settings_of(site);
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
    const std::vector<int64_t> shape =
        channels > 0 ? std::vector<int64_t>{channels} : std::vector<int64_t>{};
    site.add_buffer("scale", torch::zeros(shape));
    site.add_buffer("zero_point", torch::zeros(shape));
    site.add_buffer("tracked_min", torch::zeros(shape));
    site.add_buffer("tracked_max", torch::zeros(shape));
    site.add_buffer("observed", torch::zeros({}));  // 1 once a range has been recorded
    site.add_buffer("active", torch::zeros({}));    // 1 when the last forward quantized
  }

  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config&,
                                shrink::Site& site) override {
    const SiteSettings s = settings_of(site);
    const bool training = shrink::is_training();
    if (training && steps_ < s.quant_start_step) return deactivate(site, weight);
    // Weights: the current range, in training and whenever no step has recorded one (so that
    // evaluation before any training step is well defined).
    if (training || site.state("observed").item<float>() == 0.0f) {
      auto mm = min_max(weight, s.per_channel, 0);
      record_range(site, mm.first, mm.second);
      compute_qparams(s, mm.first, mm.second, site.state("scale"), site.state("zero_point"));
    }
    return quantize_with_state(s, weight, site, 0);
  }

  torch::Tensor quantize_input(torch::Tensor input, const shrink::Config&,
                               shrink::Site& site) override {
    return quantize_activation(input, site);
  }
  torch::Tensor quantize_output(torch::Tensor output, const shrink::Config&,
                                shrink::Site& site) override {
    return quantize_activation(output, site);
  }

  void step() override { ++steps_; }

  shrink::Calibration export_site(shrink::Site& site) override {
    const SiteSettings s = settings_of(site);
    shrink::Calibration c;
    c.scale = site.state("scale").clone();
    c.zero_point = site.state("zero_point").clone();
    c.quant_bits = s.bits;
    c.quant_dtype = (s.is_signed ? "int" : "uint") + std::to_string(s.bits);
    c.quant_scheme = s.symmetric ? "symmetric" : "affine";
    c.quant_min = static_cast<int64_t>(s.qmin);
    c.quant_max = static_cast<int64_t>(s.qmax);
    if (site.state("observed").item<float>() != 0.0f) {
      c.tracked_min = site.state("tracked_min").min().item<double>();
      c.tracked_max = site.state("tracked_max").max().item<double>();
    }
    return c;
  }

 private:
  torch::Tensor quantize_activation(const torch::Tensor& x, shrink::Site& site) {
    const SiteSettings s = settings_of(site);
    if (shrink::is_training()) {
      auto mm = min_max(x, false, 1);
      if (site.state("observed").item<float>() == 0.0f) {
        record_range(site, mm.first, mm.second);
      } else {
        site.state("tracked_min").mul_(ema_decay_).add_(mm.first, 1.0 - ema_decay_);
        site.state("tracked_max").mul_(ema_decay_).add_(mm.second, 1.0 - ema_decay_);
      }
      if (steps_ < s.quant_start_step) return deactivate(site, x);
      compute_qparams(s, site.state("tracked_min"), site.state("tracked_max"), site.state("scale"),
                      site.state("zero_point"));
    } else if (site.state("observed").item<float>() == 0.0f) {
      // Evaluation before any training batch: no range yet, nothing to quantize with.
      return deactivate(site, x);
    }
    return quantize_with_state(s, x, site, 1);
  }

  static void record_range(shrink::Site& site, const torch::Tensor& rmin, const torch::Tensor& rmax) {
    if (site.state("tracked_min").sizes() != rmin.sizes()) {
      throw shrink::InvalidArgument("qat: " + site.module_name() + "." + site.target() +
                                    " has " + std::to_string(rmin.numel()) +
                                    " channels, its state was set up for " +
                                    std::to_string(site.state("tracked_min").numel()));
    }
    site.state("tracked_min").copy_(rmin);
    site.state("tracked_max").copy_(rmax);
    site.state("observed").fill_(1.0);
  }

  static torch::Tensor deactivate(shrink::Site& site, const torch::Tensor& x) {
    site.state("active").fill_(0.0);
    return x;
  }

  static torch::Tensor quantize_with_state(const SiteSettings& s, const torch::Tensor& x,
                                           shrink::Site& site, int64_t axis) {
    site.state("active").fill_(1.0);
    return fake_quantize(s, x, site.state("scale"), site.state("zero_point"), axis);
  }

  double ema_decay_ = 0.99;
  int64_t steps_ = 1;  // NNI counts optimizer steps from 1
};

}  // namespace

SHRINK_PLUGIN("qat", "1.0.0") {
  plugin.quantizer<QatQuantizer>(
      "qat", "Quantization-aware training (Jacob et al.), NNI's QAT quantizer numerics",
      shrink::kTraining | shrink::kExport | shrink::kQuantGrad);
}
