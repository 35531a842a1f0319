// NNI's Naive quantizer numerics, run through the built plugin like any third-party plugin.
#include "plugin_fixtures.hpp"

#include <shrink/core/error.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

std::unique_ptr<shrink::PluginRegistry> naive_registry() {
  return shrink::test::registry_of({shrink::test::kPluginDir});
}

shrink::SiteSpec weight_site(const std::string& module = "conv1") {
  shrink::SiteSpec spec;
  spec.module_name = module;
  spec.module_type = "Conv2d";
  spec.target = "weight";
  spec.quant_type = shrink::QuantType::kWeight;
  return spec;
}

}  // namespace

TEST(NaiveTest, QuantizesWithMaxOver127AndTruncates) {
  auto registry = naive_registry();
  shrink::QuantizerInstance q(registry->require("naive"), {});
  int s = q.add_site(weight_site());
  torch::Tensor w = torch::tensor({{1.0f, 2.0f}, {3.0f, 5.0f}});
  torch::Tensor y = q.quantize(s, w);
  // W / (5/127) = [25.4, 50.8, 76.2, 127]: truncated (not rounded) to [25, 50, 76, 127].
  const float scale = 5.0f / 127.0f;
  torch::Tensor expected = torch::tensor({{25.0f, 50.0f}, {76.0f, 127.0f}}) * scale;
  EXPECT_TRUE(torch::allclose(y, expected, 1e-6, 1e-7)) << y;
  // Rounding would have given 51 for the second element: truncation is NNI's behaviour.
  EXPECT_LT(y[0][1].item<float>(), 50.5f * scale);
}

TEST(NaiveTest, ScaleIsARunningMaximumPerSite) {
  auto registry = naive_registry();
  shrink::QuantizerInstance q(registry->require("naive"), {});
  int a = q.add_site(weight_site("conv1"));
  int b = q.add_site(weight_site("conv2"));
  q.quantize(a, torch::tensor({0.0f, 12.7f}));                     // scale 0.1
  torch::Tensor y = q.quantize(a, torch::tensor({0.25f, 1.27f}));  // would be 0.01 alone
  EXPECT_TRUE(torch::allclose(y, torch::tensor({0.2f, 1.2f})));
  EXPECT_NEAR(q.site_state(a)[0].value.item<float>(), 0.1f, 1e-7);
  // Another instance's state is untouched.
  q.quantize(b, torch::tensor({1.27f}));
  EXPECT_NEAR(q.site_state(b)[0].value.item<float>(), 0.01f, 1e-8);
  EXPECT_NEAR(q.site_state(a)[0].value.item<float>(), 0.1f, 1e-7);
}

TEST(NaiveTest, ResultHasAtMost255LevelsAndStaysInRange) {
  auto registry = naive_registry();
  shrink::QuantizerInstance q(registry->require("naive"), {});
  int s = q.add_site(weight_site());
  torch::manual_seed(0);
  torch::Tensor w = torch::randn({64, 32, 3, 3});
  torch::Tensor y = q.quantize(s, w);
  EXPECT_LE(std::get<0>(at::_unique(y)).numel(), 255);
  EXPECT_LE(y.abs().max().item<float>(), w.abs().max().item<float>() + 1e-6);
  // Truncation never moves a value away from zero.
  EXPECT_TRUE((y.abs() <= w.abs() + 1e-6).all().item<bool>());
  // Every value is an integer multiple of the scale.
  const float scale = q.site_state(s)[0].value.item<float>();
  torch::Tensor levels = y / scale;
  EXPECT_LT((levels - levels.round()).abs().max().item<float>(), 1e-3);
  // Not idempotent, as in NNI: k*s/s can land just below k in float and truncate to k-1. A second
  // pass moves a value by at most one step, towards zero.
  torch::Tensor again = q.quantize(s, y);
  EXPECT_LE((again - y).abs().max().item<float>(), scale * 1.0001f);
  EXPECT_TRUE((again.abs() <= y.abs() + 1e-6).all().item<bool>());
}

TEST(NaiveTest, AllZeroWeightStaysZero) {
  auto registry = naive_registry();
  shrink::QuantizerInstance q(registry->require("naive"), {});
  int s = q.add_site(weight_site());
  torch::Tensor y = q.quantize(s, torch::zeros({3, 3}));
  EXPECT_TRUE(torch::equal(y, torch::zeros({3, 3})));
}

TEST(NaiveTest, ExportsCalibration) {
  auto registry = naive_registry();
  shrink::QuantizerInstance q(registry->require("naive"), {});
  int s = q.add_site(weight_site());
  q.quantize(s, torch::tensor({-2.54f, 1.0f}));
  shrink::Calibration c = q.export_site(s);
  EXPECT_NEAR(c.scale.item<float>(), 0.02f, 1e-7);
  EXPECT_EQ(c.zero_point.item<int64_t>(), 0);
  EXPECT_EQ(c.quant_bits, 8);
  EXPECT_EQ(c.quant_dtype, "int8");
  EXPECT_EQ(c.quant_scheme, "symmetric");
  EXPECT_NEAR(c.tracked_max, 2.54, 1e-5);
  EXPECT_NEAR(c.tracked_min, -2.54, 1e-5);
}

TEST(NaiveTest, RejectsWhatItCannotDo) {
  auto registry = naive_registry();
  const shrink::AlgorithmInfo& naive = registry->require("naive");
  shrink::Options unknown;
  unknown.set("quant_bitz", "8");
  EXPECT_THROW(shrink::QuantizerInstance(naive, unknown), shrink::Error);

  shrink::QuantizerInstance q(naive, {});
  shrink::SiteSpec output = weight_site();
  output.target = "_output_";
  output.quant_type = shrink::QuantType::kOutput;
  EXPECT_THROW(q.add_site(output), shrink::Error);

  shrink::SiteSpec four_bits = weight_site();
  four_bits.config.set("quant_bits", "4");
  try {
    q.add_site(four_bits);
    FAIL() << "quant_bits 4 must be rejected";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("quant_bits 8 only"), std::string::npos) << e.what();
  }
}
