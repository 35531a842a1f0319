// Range estimators for post-training calibration: from what the calibration batches showed, the
// clipping range [lo, hi] to quantize with.
//
//   minmax                 the extremes seen
//   moving_average_minmax  per batch extremes, averaged: r += c * (batch - r) (torch.ao's
//                          MovingAverageMinMaxObserver, c = 0.01)
//   percentile             the p-th and (100 - p)-th percentiles (p = 99.99 by default)
//   mse                    the range minimising the expected squared quantization error (rounding
//                          inside, clipping outside), searched over histogram bins
//   entropy                the threshold minimising the KL divergence between the histogram and
//                          its quantized version (TensorRT's and ncnn's int8 calibrators)
//
// The histogram keeps `bins` bins of equal width and grows as later batches reach beyond it: its
// width doubles (pairs of bins merge) and it extends towards the side that needs it, so no count
// is ever redistributed by guesswork.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

namespace ptq {

class Histogram {
 public:
  explicit Histogram(int64_t bins) : counts_(static_cast<std::size_t>(bins), 0.0) {}

  bool empty() const { return width_ <= 0; }
  double lo() const { return lo_; }
  double hi() const { return lo_ + width_ * static_cast<double>(counts_.size()); }
  double width() const { return width_; }
  const std::vector<double>& counts() const { return counts_; }
  double center(std::size_t j) const { return lo_ + (static_cast<double>(j) + 0.5) * width_; }

  // Makes room for [min, max]; the caller then adds the values with add_counts.
  void cover(double min, double max) {
    if (empty()) {
      const double span = std::max(max - min, 1e-8);
      lo_ = min;
      width_ = span / static_cast<double>(counts_.size()) * (1.0 + 1e-6);
      return;
    }
    while (min < lo() || max >= hi()) grow(min < lo());
  }

  // Adds per-bin counts computed over [lo(), hi()) with the current bins.
  void add_counts(const float* counts) {
    for (std::size_t j = 0; j < counts_.size(); ++j) counts_[j] += counts[j];
  }

  // Replaces the counts (as many as there are bins): the same bins' counts summed over ranks.
  void set_counts(const double* counts) { counts_.assign(counts, counts + counts_.size()); }

  double total() const {
    double t = 0;
    for (double c : counts_) t += c;
    return t;
  }

  // The value below which `fraction` of the counts lie, interpolated inside its bin.
  double quantile(double fraction) const {
    const double target = fraction * total();
    double seen = 0;
    for (std::size_t j = 0; j < counts_.size(); ++j) {
      if (seen + counts_[j] >= target && counts_[j] > 0) {
        const double inside = (target - seen) / counts_[j];
        return lo_ + (static_cast<double>(j) + inside) * width_;
      }
      seen += counts_[j];
    }
    return hi();
  }

 private:
  // Doubles the bin width; the old range becomes the upper half (extend_down) or the lower half.
  void grow(bool extend_down) {
    const std::size_t n = counts_.size();
    std::vector<double> merged(n, 0.0);
    const std::size_t offset = extend_down ? n / 2 : 0;
    for (std::size_t j = 0; j < n; ++j) merged[offset + j / 2] += counts_[j];
    if (extend_down) lo_ -= width_ * static_cast<double>(n);
    width_ *= 2;
    counts_ = std::move(merged);
  }

  std::vector<double> counts_;
  double lo_ = 0;
  double width_ = 0;
};

struct Range {
  double lo, hi;
};

// Expected squared error of quantizing the histogram's mass to `levels` steps over [a, b]:
// clipping error outside, uniform rounding error (step^2 / 12) inside.
inline double quantization_error(const Histogram& h, double a, double b, double levels) {
  const double step = (b - a) / levels;
  double error = 0;
  for (std::size_t j = 0; j < h.counts().size(); ++j) {
    const double c = h.counts()[j];
    if (c == 0) continue;
    const double x = h.center(j);
    if (x < a) {
      error += c * (x - a) * (x - a);
    } else if (x > b) {
      error += c * (x - b) * (x - b);
    } else {
      error += c * step * step / 12.0;
    }
  }
  return error;
}

// Shrinks [lo, hi] bin by bin from whichever end lowers the error more, and keeps the best range
// met on the way (torch.ao's HistogramObserver searches the same way). Symmetric: [-t, t].
inline Range mse_range(const Histogram& h, double levels, bool symmetric) {
  const std::size_t n = h.counts().size();
  if (symmetric) {
    const double top = std::max(std::abs(h.lo()), std::abs(h.hi()));
    Range best{-top, top};
    double best_error = quantization_error(h, -top, top, levels);
    for (std::size_t k = 1; k < n; ++k) {
      const double t = top * static_cast<double>(n - k) / static_cast<double>(n);
      const double e = quantization_error(h, -t, t, levels);
      if (e < best_error) {
        best_error = e;
        best = {-t, t};
      }
    }
    return best;
  }
  std::size_t left = 0, right = n;  // the range is bins [left, right)
  auto edge = [&](std::size_t j) { return h.lo() + static_cast<double>(j) * h.width(); };
  Range best{h.lo(), h.hi()};
  double best_error = quantization_error(h, best.lo, best.hi, levels);
  while (right - left > 1) {
    const double up = quantization_error(h, edge(left + 1), edge(right), levels);
    const double down = quantization_error(h, edge(left), edge(right - 1), levels);
    if (up < down) {
      ++left;
    } else {
      --right;
    }
    const double e = std::min(up, down);
    if (e < best_error) {
      best_error = e;
      best = {edge(left), edge(right)};
    }
  }
  return best;
}

// KL-divergence calibration on a magnitude histogram (TensorRT's algorithm): for each candidate
// threshold of i bins, P is the histogram up to i with the tail folded into its last bin, Q is the
// histogram up to i *without* the tail, squeezed into `levels` levels and spread back evenly over
// each level's nonzero bins; the threshold with the smallest KL(P || Q) wins. Q leaving the tail
// out is what makes clipping a heavy tail expensive (built from P, Q matches P exactly when each
// level is one bin, and the smallest threshold always won).
inline double entropy_threshold(const std::vector<double>& hist, double width, int64_t levels) {
  const std::size_t n = hist.size();
  const std::size_t first = std::min<std::size_t>(static_cast<std::size_t>(levels), n);
  double best_kl = std::numeric_limits<double>::infinity();
  std::size_t best_i = n;
  double tail = 0;
  for (std::size_t j = first; j < n; ++j) tail += hist[j];
  std::vector<double> p, q;
  for (std::size_t i = first; i <= n; ++i) {
    if (i > first) tail -= hist[i - 1];
    p.assign(hist.begin(), hist.begin() + static_cast<std::ptrdiff_t>(i));
    p[i - 1] += tail;
    q.assign(i, 0.0);
    const double per_level = static_cast<double>(i) / static_cast<double>(levels);
    for (int64_t l = 0; l < levels; ++l) {
      const auto start = static_cast<std::size_t>(static_cast<double>(l) * per_level);
      const auto stop =
          l + 1 == levels ? i : static_cast<std::size_t>(static_cast<double>(l + 1) * per_level);
      double mass = 0;
      std::size_t nonzero = 0;
      for (std::size_t j = start; j < stop; ++j) {
        mass += hist[j];
        nonzero += hist[j] > 0 ? 1 : 0;
      }
      for (std::size_t j = start; j < stop; ++j) {
        if (hist[j] > 0) q[j] = mass / static_cast<double>(nonzero);
      }
    }
    double p_total = 0, q_total = 0;
    for (std::size_t j = 0; j < i; ++j) {
      p_total += p[j];
      q_total += q[j];
    }
    if (p_total <= 0 || q_total <= 0) continue;
    double kl = 0;
    for (std::size_t j = 0; j < i; ++j) {
      if (p[j] <= 0) continue;
      const double pj = p[j] / p_total;
      const double qj = std::max(q[j] / q_total, 1e-12);  // P's folded tail where Q has nothing
      kl += pj * std::log(pj / qj);
    }
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  return static_cast<double>(best_i) * width;
}

// The magnitudes of one side of a histogram (sign +1: x > 0; -1: x < 0; 0: both), in bins of its
// width counted from 0.
inline std::vector<double> magnitudes(const Histogram& h, int sign) {
  const double top = std::max(std::abs(h.lo()), std::abs(h.hi()));
  std::vector<double> out(
      std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(top / h.width()))), 0.0);
  for (std::size_t j = 0; j < h.counts().size(); ++j) {
    const double x = h.center(j);
    if ((sign > 0 && x < 0) || (sign < 0 && x > 0)) continue;
    const auto k = static_cast<std::size_t>(std::abs(x) / h.width());
    out[std::min(out.size() - 1, k)] += h.counts()[j];
  }
  return out;
}

// The entropy range of a histogram: one-signed data (after a ReLU, say) use every level on their
// side; mixed-sign data get a threshold per side with half the levels each (affine), or one on
// |x| (symmetric).
inline Range entropy_range(const Histogram& h, int64_t levels, bool symmetric) {
  const double lo = std::min(h.lo(), 0.0), hi = std::max(h.hi(), 0.0);
  if (h.lo() >= 0)
    return {0.0, std::min(hi, entropy_threshold(magnitudes(h, +1), h.width(), levels))};
  if (h.hi() <= 0)
    return {std::max(lo, -entropy_threshold(magnitudes(h, -1), h.width(), levels)), 0.0};
  if (symmetric) {
    const double t = entropy_threshold(magnitudes(h, 0), h.width(), levels / 2);
    return {std::max(lo, -t), std::min(hi, t)};
  }
  return {std::max(lo, -entropy_threshold(magnitudes(h, -1), h.width(), levels / 2)),
          std::min(hi, entropy_threshold(magnitudes(h, +1), h.width(), levels / 2))};
}

}  // namespace ptq
