// The ptq plugin through the host: calibration, range estimators, defaults, errors.
#include "plugin_fixtures.hpp"

#include "../range_estimators.hpp"

#include <shrink/core/error.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace {

class PtqTest : public ::testing::Test {
 protected:
  PtqTest() : registry_(shrink::test::registry_of({shrink::test::kPluginDir})) {}

  void make(const std::vector<std::pair<std::string, std::string>>& options = {}) {
    shrink::Options o;
    for (const auto& kv : options) o.set(kv.first, kv.second);
    q_ = std::make_unique<shrink::QuantizerInstance>(registry_->require("ptq"), o);
    q_->set_training(false);
  }
  int site(const std::string& target, shrink::QuantType type, const at::Tensor& sample = {},
           const std::vector<std::pair<std::string, std::string>>& config = {}) {
    shrink::SiteSpec spec;
    spec.module_name = "conv1";
    spec.module_type = "Conv2d";
    spec.target = target;
    spec.quant_type = type;
    spec.config.set("quant_dtype", "int8");
    spec.config.set("quant_bits", "8");
    spec.config.set("quant_scheme", "default");
    spec.config.set("granularity", "default");
    for (const auto& kv : config) spec.config.set(kv.first, kv.second);
    spec.sample = sample;
    return q_->add_site(spec);
  }
  // Calibrates on `batches` at `s`, then ends calibration.
  void calibrate(int s, const std::vector<at::Tensor>& batches) {
    q_->set_calibrating(true);
    for (const auto& b : batches)
      EXPECT_TRUE(torch::equal(q_->quantize(s, b), b));  // observers only
    q_->set_calibrating(false);
    q_->end_calibration();
  }
  shrink::Calibration cal(int s) { return q_->export_site(s); }

  std::unique_ptr<shrink::PluginRegistry> registry_;
  std::unique_ptr<shrink::QuantizerInstance> q_;
};

}  // namespace

TEST_F(PtqTest, MinMaxActivationIsAffinePerTensorAndQuantizesAsAten) {
  make();
  int s = site("_output_0", shrink::QuantType::kOutput);
  calibrate(s, {torch::tensor({-1.0f, 2.0f}), torch::tensor({0.5f, 3.0f})});
  shrink::Calibration c = cal(s);
  EXPECT_EQ(c.quant_scheme, "affine");
  EXPECT_FLOAT_EQ(c.tracked_min, -1.0);
  EXPECT_FLOAT_EQ(c.tracked_max, 3.0);
  EXPECT_NEAR(c.scale.item<float>(), 4.0f / 254, 1e-7);
  EXPECT_EQ(c.zero_point.item<float>(), -63.0f);  // qmin - nearbyint(-1 / (4/254)) = -127 + 64
  const at::Tensor x = torch::linspace(-2, 4, 101);
  EXPECT_TRUE(torch::equal(q_->quantize(s, x), torch::fake_quantize_per_tensor_affine(
                                                   x, c.scale.item<float>(), -63, -127, 127)));
}

TEST_F(PtqTest, MovingAverageFollowsTorchAoFormula) {
  make({{"estimator", "moving_average_minmax"}, {"averaging_constant", "0.5"}});
  int s = site("_input_0", shrink::QuantType::kInput);
  calibrate(
      s, {torch::tensor({-1.0f, 1.0f}), torch::tensor({-3.0f, 5.0f}), torch::tensor({0.0f, 1.0f})});
  // min: -1 -> -1 + 0.5 * (-3 + 1) = -2 -> -2 + 0.5 * (0 + 2) = -1; max: 1 -> 3 -> 2
  EXPECT_FLOAT_EQ(cal(s).tracked_min, -1.0);
  EXPECT_FLOAT_EQ(cal(s).tracked_max, 2.0);
}

TEST_F(PtqTest, WeightsDefaultToSymmetricPerChannel) {
  make();
  const at::Tensor w = torch::tensor({{1.0f, -2.0f}, {0.5f, 0.25f}, {-4.0f, 3.0f}});
  int s = site("weight", shrink::QuantType::kWeight, w);
  calibrate(s, {w, w});
  shrink::Calibration c = cal(s);
  EXPECT_EQ(c.quant_scheme, "symmetric");
  ASSERT_EQ(c.scale.numel(), 3);
  EXPECT_TRUE(torch::allclose(c.scale, torch::tensor({2.0f, 0.5f, 4.0f}) / 127));
  EXPECT_TRUE(torch::equal(c.zero_point, torch::zeros({3})));
  const at::Tensor expected = torch::fake_quantize_per_channel_affine(
      w, c.scale, torch::zeros({3}, torch::kInt), 0, -127, 127);
  EXPECT_TRUE(torch::equal(q_->quantize(s, w), expected));
  // Explicit settings win over the defaults.
  int t = site("weight", shrink::QuantType::kWeight, w,
               {{"quant_scheme", "affine"}, {"granularity", "default"}});
  EXPECT_NE(t, s);
}

TEST_F(PtqTest, PercentileClipsRareOutliers) {
  make({{"estimator", "percentile"}, {"percentile", "99.9"}});
  int s = site("_output_0", shrink::QuantType::kOutput);
  torch::manual_seed(3);
  at::Tensor x = torch::rand({100000});  // uniform [0, 1)
  x[7] = 50.0f;                          // one outlier
  calibrate(s, {x});
  EXPECT_NEAR(cal(s).tracked_max, 0.999, 0.01);
  EXPECT_NEAR(cal(s).tracked_min, 0.001,
              0.01);  // what the estimator found; the scale's range adds 0
}

// Squared error of fake-quantizing x over [lo, hi] (extended to 0), int8 affine [-127, 127].
static double squared_error(const at::Tensor& x, double lo, double hi) {
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  const double scale = (hi - lo) / 254;
  const auto zp = static_cast<int64_t>(-127 - std::nearbyint(lo / scale));
  return (torch::fake_quantize_per_tensor_affine(x, scale, zp, -127, 127) - x)
      .pow(2)
      .sum()
      .item<double>();
}

// MSE picks a range whose quantization error is below the full range's; on Gaussian data that
// means clipping the extremes a little.
TEST_F(PtqTest, MseRangeHasLessErrorThanMinMax) {
  torch::manual_seed(4);
  const at::Tensor x = torch::randn({200000});
  make({{"estimator", "mse"}});
  int s = site("_output_0", shrink::QuantType::kOutput);
  calibrate(s, {x.narrow(0, 0, 100000), x.narrow(0, 100000, 100000)});
  const double lo = cal(s).tracked_min, hi = cal(s).tracked_max;
  const double min = x.min().item<double>(), max = x.max().item<double>();
  EXPECT_TRUE(lo > min + 0.1 && hi < max - 0.1) << lo << " " << hi << " in " << min << " " << max;
  EXPECT_LT(squared_error(x, lo, hi), squared_error(x, min, max));
  // What the site computes is that range's fake-quant.
  EXPECT_NEAR((q_->quantize(s, x) - x).pow(2).sum().item<double>(), squared_error(x, lo, hi), 1e-3);
}

// Entropy calibration cuts a long, thin tail (20 values at 40 beside a bulk within about 20) and
// keeps the bulk.
TEST_F(PtqTest, EntropyClipsALongThinTail) {
  torch::manual_seed(4);
  const at::Tensor bulk = torch::randn({200000}).abs() * torch::randn({200000});
  const at::Tensor x = torch::cat({bulk, torch::full({20}, 40.0f)});
  make({{"estimator", "entropy"}});
  int s = site("_output_0", shrink::QuantType::kOutput);
  calibrate(s, {x.narrow(0, 0, 100000), x.narrow(0, 100000, 100020)});
  EXPECT_LT(cal(s).tracked_max, 30.0);
  EXPECT_GT(cal(s).tracked_max, 2.0);
  EXPECT_LT(cal(s).tracked_min, -2.0);
  // Relu-like (one-signed) data keep 0 as the lower end.
  make({{"estimator", "entropy"}});
  int r = site("_output_0", shrink::QuantType::kOutput);
  calibrate(r, {torch::relu(x)});
  EXPECT_EQ(cal(r).tracked_min, 0.0);
  EXPECT_LT(cal(r).tracked_max, 30.0);
}

TEST_F(PtqTest, PerSiteRangeEstimatorOverridesTheOption) {
  make();
  int a = site("_output_0", shrink::QuantType::kOutput, {}, {{"range_estimator", "percentile"}});
  int b = site("_input_0", shrink::QuantType::kInput);
  at::Tensor x = torch::rand({10000});
  x[0] = 100.0f;
  q_->set_calibrating(true);
  q_->quantize(a, x);
  q_->quantize(b, x);
  q_->set_calibrating(false);
  q_->end_calibration();
  EXPECT_LT(cal(a).tracked_max, 2.0);
  EXPECT_FLOAT_EQ(cal(b).tracked_max, 100.0);
}

TEST_F(PtqTest, ClearErrors) {
  EXPECT_THROW(make({{"estimator", "fancy"}}), shrink::Error);
  EXPECT_THROW(make({{"weight_estimator", "entropy"}}), shrink::Error);
  EXPECT_THROW(make({{"percentile", "20"}}), shrink::Error);
  EXPECT_THROW(make({{"bins", "1000"}}), shrink::Error);
  EXPECT_THROW(make({{"unknown", "1"}}), shrink::Error);
  make();
  EXPECT_THROW(site("_output_0", shrink::QuantType::kOutput, {}, {{"range_estimator", "magic"}}),
               shrink::Error);
  EXPECT_THROW(site("_output_0", shrink::QuantType::kOutput, {}, {{"granularity", "per_channel"}}),
               shrink::Error);
  // A site that calibration never reached.
  int s = site("_output_0", shrink::QuantType::kOutput);
  q_->set_calibrating(true);
  q_->set_calibrating(false);
  try {
    q_->end_calibration();
    FAIL() << "expected an error";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv1._output_0 saw no data"), std::string::npos)
        << e.what();
  }
  // NaN reaching a site during calibration.
  q_->set_calibrating(true);
  EXPECT_THROW(q_->quantize(s, torch::tensor({1.0f, NAN})), shrink::Error);
  q_->set_calibrating(false);
  // Before calibration, evaluation leaves values as they are.
  const at::Tensor x = torch::tensor({0.1234f});
  EXPECT_TRUE(torch::equal(q_->quantize(s, x), x));
}

TEST(PtqHistogramTest, GrowingKeepsEveryCountAndItsPlace) {
  ptq::Histogram h(256);
  h.cover(0.0, 1.0);
  std::vector<float> ones(256, 1.0f);
  h.add_counts(ones.data());
  const double width = h.width();
  h.cover(-3.0, 0.5);  // must extend downwards
  EXPECT_LE(h.lo(), -3.0);
  EXPECT_GE(h.hi(), 1.0);
  EXPECT_DOUBLE_EQ(h.total(), 256.0);
  EXPECT_EQ(h.width(), width * 4);
  // The old mass [0, 1] lies in bins whose centers are in [0, 1 + width).
  double inside = 0;
  for (std::size_t j = 0; j < h.counts().size(); ++j) {
    if (h.center(j) > 0 && h.center(j) < 1.0 + h.width()) inside += h.counts()[j];
  }
  EXPECT_DOUBLE_EQ(inside, 256.0);
  EXPECT_NEAR(h.quantile(0.5), 0.5, h.width());
}
