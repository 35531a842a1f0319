// What the built-in range-based quantizers (qat, ptq) share: the integer range of a site's
// dtype, scale and zero point from a float range, the state they keep per site, and its export.
// Header-only: each plugin is its own shared library.
//
//   int  (NNI's restricted range): [-(2^(b-1) - 1), 2^(b-1) - 1];  uint: [0, 2^b - 1]
//   reduce_range (activations; torch.ao's option for backends whose int8 products accumulate in
//   16 bits, fbgemm without VNNI): one bit fewer, so uint8 is [0, 127] and int8 [-63, 63]
//   range     rmin = min(rmin, 0), rmax = max(rmax, 0)          (the range always contains 0)
//   affine    scale = (rmax - rmin) / (qmax - qmin),  zp = qmin - round(rmin / scale)
//   symmetric scale = max(|rmin|, |rmax|) / ((qmax - qmin) / 2), zp = 0 (int) or middle (uint)
//   scale >= float eps; zp clamped to [qmin, qmax]; all in float32, as NNI's tensors compute it
#pragma once

#include <shrink/sdk.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace shrink_builtin {

struct RangeSettings {
  int bits = 8;
  bool is_signed = true;
  bool symmetric = false;
  bool per_channel = false;
  float qmin = 0;
  float qmax = 0;
};

// bits and signedness from the site's config (2 to 8 bits), and the integer range they give
// (one bit narrower for an activation with `reduce_range`). `plugin` names the caller in errors.
inline RangeSettings range_settings(const shrink::Site& site, const std::string& plugin,
                                    bool reduce_range = false) {
  const shrink::Config& c = site.config();
  RangeSettings s;
  s.bits = static_cast<int>(c.get_int("quant_bits", 8));
  s.is_signed = c.get("quant_dtype", "int8").rfind("uint", 0) != 0;
  if (s.bits < 2 || s.bits > 8) {
    throw shrink::Unsupported(plugin + " supports 2 to 8 bits; " + site.module_name() + "." +
                              site.target() + " asks for " + std::to_string(s.bits));
  }
  const int range_bits =
      reduce_range && site.quant_type() != shrink::QuantType::kWeight ? s.bits - 1 : s.bits;
  if (s.is_signed) {
    s.qmax = static_cast<float>((1 << (range_bits - 1)) - 1);
    s.qmin = -s.qmax;
  } else {
    s.qmax = static_cast<float>((1 << range_bits) - 1);
  }
  return s;
}

// Scale and zero point for the ranges [rmin[c], rmax[c]], channel by channel.
inline void compute_qparams(const RangeSettings& s, const float* rmin_in, const float* rmax_in,
                            int64_t n, float* scale, float* zero_point) {
  const float eps = std::numeric_limits<float>::epsilon();
  for (int64_t c = 0; c < n; ++c) {
    const float rmin = std::min(rmin_in[c], 0.0f);
    const float rmax = std::max(rmax_in[c], 0.0f);
    if (s.symmetric) {
      const float bound = std::max(std::abs(rmin), std::abs(rmax));
      scale[c] = std::max(bound / ((s.qmax - s.qmin) / 2.0f), eps);
      zero_point[c] = s.is_signed ? 0.0f : std::floor((s.qmin + s.qmax) / 2.0f);
    } else {
      scale[c] = std::max((rmax - rmin) / (s.qmax - s.qmin), eps);
      zero_point[c] = std::min(std::max(s.qmin - std::nearbyint(rmin / scale[c]), s.qmin), s.qmax);
    }
  }
}

// The per-site state: scale, zero_point, tracked_min, tracked_max (one per output channel, or
// scalars) and `observed` (1 once a range has been recorded).
inline void declare_range_state(shrink::Site& site, int64_t channels) {
  const std::vector<int64_t> shape =
      channels > 0 ? std::vector<int64_t>{channels} : std::vector<int64_t>{};
  site.add_buffer("scale", torch::zeros(shape));
  site.add_buffer("zero_point", torch::zeros(shape));
  site.add_buffer("tracked_min", torch::zeros(shape));
  site.add_buffer("tracked_max", torch::zeros(shape));
  site.add_buffer("observed", torch::zeros({}));
}

inline bool observed(shrink::Site& site) {
  return site.state("observed").data_ptr<float>()[0] != 0.0f;
}

// NNI's calibration fields from that state. A scale never computed (still the zeros it was
// declared with: the site saw no data, or only before qat's quant_start_step) is left undefined,
// so the site stays in float in the exported model.
inline shrink::Calibration export_range_state(shrink::Site& site, const RangeSettings& s) {
  shrink::Calibration c;
  if (site.state("scale").min().item<float>() > 0.0f) {
    c.scale = site.state("scale").clone();
    c.zero_point = site.state("zero_point").clone();
  }
  c.quant_bits = s.bits;
  c.quant_dtype = (s.is_signed ? "int" : "uint") + std::to_string(s.bits);
  c.quant_scheme = s.symmetric ? "symmetric" : "affine";
  c.quant_min = static_cast<int64_t>(s.qmin);
  c.quant_max = static_cast<int64_t>(s.qmax);
  if (observed(site)) {
    c.tracked_min = site.state("tracked_min").min().item<double>();
    c.tracked_max = site.state("tracked_max").max().item<double>();
  }
  return c;
}

}  // namespace shrink_builtin
