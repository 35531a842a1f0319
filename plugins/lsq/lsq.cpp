// Learned Step Size Quantization (Esser et al., ICLR 2020), written against the public SDK only.
//
// Per site a learnable step size s (one, or one per output channel for a weight with
// `granularity: per_channel`), trained by the experiment's optimizer:
//   signed (intK)   Qn = 2^(K-1), Qp = 2^(K-1) - 1        unsigned (uintK)   Qn = 0, Qp = 2^K - 1
//   forward   v = x / s,  x_hat = round(clamp(v, -Qn, Qp)) * s
//   backward  dL/dx = dL/dx_hat where -Qn <= v <= Qp, else 0          (straight-through)
//             dL/ds = g * sum(dL/dx_hat * (round(v) - v  inside;  -Qn below;  Qp above))
//             g = 1 / sqrt(N * Qp), N the number of weights (of the channel, per channel) or an
//             activation's features per sample (its numel over the batch size)
//   init      s = 2 * mean(|x|) / sqrt(Qp), from the first tensor the site sees
// The weight gets its gradient like any other input (NNI's LSQ weight path loses it; a test
// checks ours does not). Calibration export: scale s, zero point 0, integer range [-Qn, Qp],
// which is exactly what ATen's fake-quantize computes, so model_qat.pt and the int8 export follow.
#include <shrink/sdk.hpp>

#include <cmath>
#include <string>
#include <unordered_map>

namespace {

struct Settings {
  int bits = 8;
  bool is_signed = true;
  bool per_channel = false;
  double qn = 128, qp = 127;
};

Settings settings_of(const shrink::Site& site) {
  const shrink::Config& c = site.config();
  Settings s;
  s.bits = static_cast<int>(c.get_int("quant_bits", 8));
  if (s.bits < 2 || s.bits > 8) {
    throw shrink::Unsupported("lsq supports 2 to 8 bits; " + site.module_name() + "." +
                              site.target() + " asks for " + std::to_string(s.bits));
  }
  const std::string dtype = c.get("quant_dtype", "int" + std::to_string(s.bits));
  s.is_signed = dtype.rfind("uint", 0) != 0;
  s.qn = s.is_signed ? std::ldexp(1.0, s.bits - 1) : 0.0;
  s.qp = s.is_signed ? std::ldexp(1.0, s.bits - 1) - 1 : std::ldexp(1.0, s.bits) - 1;
  const std::string granularity = c.get("granularity", "default");
  if (granularity != "default" && granularity != "per_tensor" && granularity != "per_channel") {
    throw shrink::InvalidArgument("lsq: granularity is '" + granularity +
                                  "' (allowed: default, per_tensor, per_channel)");
  }
  s.per_channel = granularity == "per_channel";
  if (s.per_channel && site.quant_type() != shrink::QuantType::kWeight) {
    throw shrink::Unsupported("lsq: per_channel granularity is supported for weights only (" +
                              site.module_name() + "." + site.target() + ")");
  }
  return s;
}

// The step size broadcast against x: a scalar, or [C, 1, 1, ...] per output channel.
torch::Tensor broadcast_step(const torch::Tensor& step, const torch::Tensor& x, bool per_channel) {
  if (!per_channel) return step;
  std::vector<int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[0] = -1;
  return step.reshape(shape);
}

// LSQ's gradient scale: 1 / sqrt(N * Qp).
double gradient_scale(const torch::Tensor& x, const Settings& s, shrink::QuantType type) {
  double n = static_cast<double>(x.numel());
  if (type == shrink::QuantType::kWeight) {
    if (s.per_channel) n /= static_cast<double>(x.size(0));
  } else if (x.dim() > 1) {
    n /= static_cast<double>(x.size(0));  // features per sample
  }
  return 1.0 / std::sqrt(n * s.qp);
}

using SiteTable = std::unordered_map<const shrink::Site*, Settings>;

class LsqGrad : public shrink::QuantGrad {
 public:
  explicit LsqGrad(const SiteTable& sites) : sites_(sites) {}

  torch::Tensor quant_backward(torch::Tensor x, torch::Tensor grad, shrink::QuantType type,
                               shrink::Site& site) override {
    const Settings& s = sites_.at(&site);
    const torch::Tensor step = site.state("step");
    const torch::Tensor v = x / broadcast_step(step.clamp_min(1e-12), x, s.per_channel);
    const torch::Tensor below = v<-s.qn, above = v> s.qp;
    const torch::Tensor inside = torch::logical_not(torch::logical_or(below, above));
    const torch::Tensor dv = torch::where(
        below, torch::full({}, -s.qn), torch::where(above, torch::full({}, s.qp), v.round() - v));
    torch::Tensor dstep = grad * dv;
    if (s.per_channel) {
      dstep = dstep.reshape({x.size(0), -1}).sum(1);
    } else {
      dstep = dstep.sum();
    }
    site.set_grad("step", (dstep * gradient_scale(x, s, type)).reshape(step.sizes()));
    return grad * inside;
  }

 private:
  const SiteTable& sites_;
};

class LsqQuantizer : public shrink::Quantizer {
 public:
  explicit LsqQuantizer(const shrink::Config& options) : Quantizer(options) {
    options.require_known_keys({});
    quant_grad = std::make_unique<LsqGrad>(sites_);
  }

  void setup_site(shrink::Site& site) override {
    const Settings s = settings_of(site);
    int64_t channels = 0;
    if (s.per_channel) {
      if (!site.sample().defined() || site.sample().dim() < 2) {
        throw shrink::InvalidArgument("lsq: per_channel needs the weight of " + site.module_name());
      }
      channels = site.sample().size(0);
    }
    sites_[&site] = s;
    const std::vector<int64_t> shape =
        channels > 0 ? std::vector<int64_t>{channels} : std::vector<int64_t>{};
    site.add_parameter("step", torch::ones(shape));
    site.add_buffer("initialized", torch::zeros({}));
  }

  torch::Tensor quantize_weight(torch::Tensor w, const shrink::Config&,
                                shrink::Site& site) override {
    return quantize(w, site);
  }
  torch::Tensor quantize_input(torch::Tensor x, const shrink::Config&,
                               shrink::Site& site) override {
    return quantize(x, site);
  }
  torch::Tensor quantize_output(torch::Tensor x, const shrink::Config&,
                                shrink::Site& site) override {
    return quantize(x, site);
  }

  shrink::Calibration export_site(shrink::Site& site) override {
    const Settings& s = sites_.at(&site);
    shrink::Calibration c;
    c.scale = site.state("step").detach().clamp_min(1e-12).clone();
    c.zero_point = torch::zeros_like(c.scale);
    c.quant_bits = s.bits;
    c.quant_dtype = (s.is_signed ? "int" : "uint") + std::to_string(s.bits);
    c.quant_scheme = "symmetric";
    c.quant_min = static_cast<int64_t>(-s.qn);
    c.quant_max = static_cast<int64_t>(s.qp);
    c.tracked_min = -s.qn * c.scale.max().item<double>();
    c.tracked_max = s.qp * c.scale.max().item<double>();
    return c;
  }

 private:
  torch::Tensor quantize(const torch::Tensor& x, shrink::Site& site) {
    const Settings& s = sites_.at(&site);
    torch::Tensor& step = site.state("step");
    torch::Tensor& initialized = site.state("initialized");
    if (initialized.item<float>() == 0.0f) {
      // 2 * mean(|x|) / sqrt(Qp), per channel or over the tensor.
      const torch::Tensor a = x.detach().abs();
      torch::Tensor mean = s.per_channel ? a.reshape({x.size(0), -1}).mean(1) : a.mean();
      // Over every rank's first training (or calibration) batch: the same step size everywhere.
      // Evaluation deals the test set unevenly: no collective there.
      if (shrink::is_training() || shrink::is_calibrating()) {
        shrink::all_reduce(mean, shrink::Reduce::kMean);
      }
      step.copy_((2.0 * mean / std::sqrt(s.qp)).clamp_min(1e-8).reshape(step.sizes()));
      initialized.fill_(1.0f);
    }
    const torch::Tensor st = broadcast_step(step.clamp_min(1e-12), x, s.per_channel);
    return (x / st).clamp(-s.qn, s.qp).round() * st;
  }

  SiteTable sites_;
};

}  // namespace

SHRINK_PLUGIN("lsq", "1.0.0") {
  plugin.quantizer<LsqQuantizer>(
      "lsq",
      "Learned Step Size Quantization (Esser et al.): a trained step size per site, 2 to 8 bits",
      shrink::kTraining | shrink::kExport | shrink::kQuantGrad);
}
