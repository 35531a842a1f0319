// Post-training quantization (NNI's Observer quantizer, with more range estimators).
//
// Calibration forwards (host->is_calibrating()) record, per site, what its range estimator needs
// and return their input unchanged: observers see the float model, as in NNI and torch.ao. At
// end_calibration each site turns that into a range [rmin, rmax] (extended to contain 0) and its
// scale and zero point, with qat's formulas:
//   affine    scale = (rmax - rmin) / (qmax - qmin),  zp = qmin - round(rmin / scale)
//   symmetric scale = max(|rmin|, |rmax|) / ((qmax - qmin) / 2), zp = 0 (int) or middle (uint)
// and from then on every forward fake-quantizes with them (ATen's kernels, exactly what
// model_qat.pt runs). Defaults: weights symmetric per output channel, activations affine per
// tensor, int8 in NNI's range [-127, 127].
//
// Options (the stage's `options`): estimator (activations: minmax, moving_average_minmax,
// percentile, mse, entropy; default minmax), weight_estimator (minmax, percentile, mse; default
// minmax), percentile (default 99.99), averaging_constant (0.01), bins (2048), reduce_range
// (activations on one bit fewer, as torch.ao offers for fbgemm; default false). A config_list
// entry's `range_estimator` overrides the estimator for the sites it selects.
#include "range_estimators.hpp"

#include "../common/affine_range.hpp"

#include <shrink/sdk.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <unordered_map>
#include <vector>

namespace {

const std::vector<std::string> kActivationEstimators = {"minmax", "moving_average_minmax",
                                                        "percentile", "mse", "entropy"};
const std::vector<std::string> kWeightEstimators = {"minmax", "percentile", "mse"};

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// The shared range settings (bits, scheme, integer range), and the site's range estimator.
struct Settings : shrink_builtin::RangeSettings {
  std::string estimator;
};

// What a site records during calibration (activations; a weight is measured when seen).
struct Record {
  Settings settings;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double avg_min = 0, avg_max = 0;  // moving averages
  int64_t batches = 0;
  std::unique_ptr<ptq::Histogram> histogram;
  std::vector<float> weight_min, weight_max;  // weights: per channel (or one value)
};

class PtqQuantizer : public shrink::Quantizer {
 public:
  explicit PtqQuantizer(const shrink::Config& options) : Quantizer(options) {
    options.require_known_keys({"estimator", "weight_estimator", "percentile", "averaging_constant",
                                "bins", "reduce_range"});
    reduce_range_ = options.get_bool("reduce_range", false);
    estimator_ = options.get("estimator", "minmax");
    weight_estimator_ = options.get("weight_estimator", "minmax");
    check_choice("estimator", estimator_, kActivationEstimators);
    check_choice("weight_estimator", weight_estimator_, kWeightEstimators);
    percentile_ = options.get_double("percentile", 99.99);
    if (!(percentile_ > 50.0 && percentile_ <= 100.0)) {
      throw shrink::InvalidArgument("percentile must be in (50, 100], got " +
                                    options.get("percentile", ""));
    }
    averaging_constant_ = options.get_double("averaging_constant", 0.01);
    if (!(averaging_constant_ > 0.0 && averaging_constant_ <= 1.0)) {
      throw shrink::InvalidArgument("averaging_constant must be in (0, 1], got " +
                                    options.get("averaging_constant", ""));
    }
    bins_ = options.get_int("bins", 2048);
    if (bins_ < 256 || bins_ > (1 << 16) || (bins_ & (bins_ - 1)) != 0) {
      throw shrink::InvalidArgument("bins must be a power of 2 from 256 to 65536, got " +
                                    options.get("bins", ""));
    }
  }

  void setup_site(shrink::Site& site) override {
    Record& r = records_[&site];
    r = Record{};
    r.settings = settings_of(site);
    int64_t channels = 0;
    if (r.settings.per_channel) {
      if (site.quant_type() != shrink::QuantType::kWeight) {
        throw shrink::Unsupported("ptq: per_channel granularity is supported for weights only (" +
                                  name(site) + ")");
      }
      if (!site.sample().defined() || site.sample().dim() < 2) {
        // A 1-d weight (a bias, a norm's scale) has no output channels: per tensor.
        r.settings.per_channel = false;
      } else {
        channels = site.sample().size(0);
      }
    }
    shrink_builtin::declare_range_state(site, channels);  // `observed`: 1 once calibrated
  }

  torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config&,
                                shrink::Site& site) override {
    Record& r = record(site);
    if (shrink::is_calibrating()) {
      // Weights do not change while calibrating: measured once per pass.
      if (r.weight_min.empty()) measure_weight(r, weight);
      return weight;
    }
    return fake_quantize(weight, site, r);
  }
  torch::Tensor quantize_input(torch::Tensor input, const shrink::Config&,
                               shrink::Site& site) override {
    return activation(input, site);
  }
  torch::Tensor quantize_output(torch::Tensor output, const shrink::Config&,
                                shrink::Site& site) override {
    return activation(output, site);
  }

  void end_calibration(shrink::Site& site) override {
    Record& r = record(site);
    const Settings& s = r.settings;
    std::vector<float> rmin, rmax;
    if (site.quant_type() == shrink::QuantType::kWeight) {
      if (r.weight_min.empty()) {
        throw shrink::InvalidArgument("ptq: " + name(site) + " saw no weight during calibration");
      }
      rmin = r.weight_min;
      rmax = r.weight_max;
    } else {
      if (r.batches == 0) {
        throw shrink::InvalidArgument(
            "ptq: " + name(site) + " saw no data during calibration (is it reached by forward?)");
      }
      if (r.histogram) {
        // Each rank counted its own samples on the same bins: the counts of the whole set.
        torch::Tensor counts = torch::tensor(r.histogram->counts(), torch::kDouble);
        shrink::all_reduce(counts, shrink::Reduce::kSum);
        r.histogram->set_counts(counts.data_ptr<double>());
      }
      const ptq::Range range = activation_range(r);
      rmin = {static_cast<float>(range.lo)};
      rmax = {static_cast<float>(range.hi)};
    }
    std::copy(rmin.begin(), rmin.end(), site.state("tracked_min").data_ptr<float>());
    std::copy(rmax.begin(), rmax.end(), site.state("tracked_max").data_ptr<float>());
    shrink_builtin::compute_qparams(s, rmin.data(), rmax.data(), static_cast<int64_t>(rmin.size()),
                                    site.state("scale").data_ptr<float>(),
                                    site.state("zero_point").data_ptr<float>());
    site.state("observed").fill_(1.0f);
    // Ready for another calibration pass.
    r = Record{r.settings};
  }

  shrink::Calibration export_site(shrink::Site& site) override {
    return shrink_builtin::export_range_state(site, record(site).settings);
  }

 private:
  static std::string name(const shrink::Site& site) {
    return site.module_name() + "." + site.target();
  }

  static void check_choice(const std::string& key, const std::string& value,
                           const std::vector<std::string>& allowed) {
    if (std::find(allowed.begin(), allowed.end(), value) == allowed.end()) {
      throw shrink::InvalidArgument(key + " is '" + value + "' (allowed: " + joined(allowed) + ")");
    }
  }

  Settings settings_of(const shrink::Site& site) const {
    const shrink::Config& c = site.config();
    const bool weight = site.quant_type() == shrink::QuantType::kWeight;
    Settings s;
    static_cast<shrink_builtin::RangeSettings&>(s) =
        shrink_builtin::range_settings(site, "ptq", reduce_range_);
    const std::string scheme = c.get("quant_scheme", "default");
    const std::string granularity = c.get("granularity", "default");
    s.symmetric = scheme == "symmetric" || (scheme == "default" && weight);
    s.per_channel = granularity == "per_channel" || (granularity == "default" && weight);
    s.estimator = c.get("range_estimator", weight ? weight_estimator_ : estimator_);
    check_choice(name(site) + ": range_estimator", s.estimator,
                 weight ? kWeightEstimators : kActivationEstimators);
    return s;
  }

  Record& record(const shrink::Site& site) {
    auto it = records_.find(&site);
    if (it == records_.end()) throw shrink::InvalidArgument("ptq: a site that was never set up");
    return it->second;
  }

  torch::Tensor activation(const torch::Tensor& x, shrink::Site& site) {
    Record& r = record(site);
    if (shrink::is_calibrating()) {
      observe(r, x);
      return x;
    }
    return fake_quantize(x, site, r);
  }

  // One calibration batch of an activation.
  void observe(Record& r, const torch::Tensor& input) {
    const torch::Tensor x = input.detach().to(torch::kFloat);
    if (x.numel() == 0) return;
    const auto mm = torch::aminmax(x);
    // The global batch's extremes (every rank's share of it): every rank then grows the same
    // histogram as one process would over the whole batch.
    torch::Tensor extremes = torch::stack({-std::get<0>(mm), std::get<1>(mm)}).to(torch::kDouble);
    shrink::all_reduce(extremes, shrink::Reduce::kMax);
    const double lo = -extremes[0].item<double>(), hi = extremes[1].item<double>();
    if (!std::isfinite(lo) || !std::isfinite(hi)) {
      throw shrink::InvalidArgument(
          "ptq: a calibration batch reached a site with NaN or infinite values");
    }
    r.min = std::min(r.min, lo);
    r.max = std::max(r.max, hi);
    if (r.batches == 0) {
      r.avg_min = lo;
      r.avg_max = hi;
    } else {
      r.avg_min += averaging_constant_ * (lo - r.avg_min);
      r.avg_max += averaging_constant_ * (hi - r.avg_max);
    }
    ++r.batches;
    const std::string& e = r.settings.estimator;
    if (e == "percentile" || e == "mse" || e == "entropy") {
      if (!r.histogram) r.histogram = std::make_unique<ptq::Histogram>(bins_);
      ptq::Histogram& h = *r.histogram;
      h.cover(lo, hi);
      const torch::Tensor counts =
          torch::histc(x, bins_, h.lo(), h.hi()).to(torch::kFloat).contiguous();
      h.add_counts(counts.data_ptr<float>());
    }
  }

  ptq::Range activation_range(const Record& r) const {
    const Settings& s = r.settings;
    const std::string& e = s.estimator;
    if (e == "minmax") return {r.min, r.max};
    if (e == "moving_average_minmax") return {r.avg_min, r.avg_max};
    const ptq::Histogram& h = *r.histogram;
    if (e == "percentile") {
      const double tail = 1.0 - percentile_ / 100.0;
      return {h.quantile(tail), h.quantile(1.0 - tail)};
    }
    const double levels = static_cast<double>(s.qmax - s.qmin);
    if (e == "mse") return ptq::mse_range(h, levels, s.symmetric);
    return ptq::entropy_range(h, static_cast<int64_t>(levels) + 1, s.symmetric);
  }

  // A weight's range per output channel (or per tensor), by the weight estimator.
  void measure_weight(Record& r, const torch::Tensor& weight) {
    const Settings& s = r.settings;
    const torch::Tensor w = weight.detach().to(torch::kFloat).contiguous();
    const torch::Tensor rows = s.per_channel ? w.reshape({w.size(0), -1}) : w.reshape({1, -1});
    torch::Tensor lo, hi;
    if (s.estimator == "percentile") {
      const double q = percentile_ / 100.0;
      lo = torch::quantile(rows, 1.0 - q, 1);
      hi = torch::quantile(rows, q, 1);
    } else {
      std::tie(lo, hi) = torch::aminmax(rows, 1);
      if (s.estimator == "mse") std::tie(lo, hi) = mse_weight_range(r, rows, lo, hi);
    }
    lo = lo.contiguous();
    hi = hi.contiguous();
    r.weight_min.assign(lo.data_ptr<float>(), lo.data_ptr<float>() + lo.numel());
    r.weight_max.assign(hi.data_ptr<float>(), hi.data_ptr<float>() + hi.numel());
  }

  // Per row, the shrink factor of [lo, hi] (from 1 down to 0.3) whose fake-quantized weights are
  // closest to the weights in squared error.
  std::pair<torch::Tensor, torch::Tensor> mse_weight_range(const Record& r,
                                                           const torch::Tensor& rows,
                                                           const torch::Tensor& lo,
                                                           const torch::Tensor& hi) const {
    const Settings& s = r.settings;
    torch::Tensor best_error = torch::full({rows.size(0)}, std::numeric_limits<float>::infinity());
    torch::Tensor best_lo = lo.clone(), best_hi = hi.clone();
    for (int k = 100; k >= 30; --k) {
      const double f = k / 100.0;
      const torch::Tensor a = torch::clamp_max(lo * f, 0.0), b = torch::clamp_min(hi * f, 0.0);
      torch::Tensor scale, zp;
      if (s.symmetric) {
        scale = torch::clamp_min(torch::maximum(-a, b) / ((s.qmax - s.qmin) / 2.0),
                                 std::numeric_limits<float>::epsilon());
        zp = torch::full_like(scale, s.is_signed ? 0.0 : std::floor((s.qmin + s.qmax) / 2.0));
      } else {
        scale =
            torch::clamp_min((b - a) / (s.qmax - s.qmin), std::numeric_limits<float>::epsilon());
        zp = torch::clamp(s.qmin - torch::round(a / scale), s.qmin, s.qmax);
      }
      const torch::Tensor q =
          (torch::clamp(torch::round(rows / scale.unsqueeze(1)) + zp.unsqueeze(1), s.qmin, s.qmax) -
           zp.unsqueeze(1)) *
          scale.unsqueeze(1);
      const torch::Tensor error = (q - rows).pow(2).sum(1);
      const torch::Tensor better = error < best_error;
      best_error = torch::where(better, error, best_error);
      best_lo = torch::where(better, a, best_lo);
      best_hi = torch::where(better, b, best_hi);
    }
    return {best_lo, best_hi};
  }

  // Fake-quantization with the calibrated parameters (before calibration: the input as it is).
  static torch::Tensor fake_quantize(const torch::Tensor& x, shrink::Site& site, const Record& r) {
    // The state (restored from a checkpoint too) says whether the site was calibrated.
    if (!shrink_builtin::observed(site)) return x;  // not calibrated (yet)
    const Settings& s = r.settings;
    const torch::Tensor& scale = site.state("scale");
    const torch::Tensor& zero_point = site.state("zero_point");
    const auto qmin = static_cast<int64_t>(s.qmin), qmax = static_cast<int64_t>(s.qmax);
    if (scale.dim() == 0) {
      return torch::fake_quantize_per_tensor_affine(
          x, scale.item<double>(), static_cast<int64_t>(zero_point.item<float>()), qmin, qmax);
    }
    return torch::fake_quantize_per_channel_affine(x, scale, zero_point.round().to(torch::kInt), 0,
                                                   qmin, qmax);
  }

  std::unordered_map<const shrink::Site*, Record> records_;
  std::string estimator_, weight_estimator_;
  double percentile_ = 99.99;
  double averaging_constant_ = 0.01;
  int64_t bins_ = 2048;
  bool reduce_range_ = false;
};

}  // namespace

SHRINK_PLUGIN("ptq", "1.0.0") {
  plugin
      .quantizer<PtqQuantizer>(
          "ptq",
          "Post-training quantization: calibration with minmax, moving-average, percentile, MSE or "
          "entropy ranges (NNI's Observer quantizer)",
          shrink::kCalibration | shrink::kExport)
      .site_keys({"range_estimator"});
}
