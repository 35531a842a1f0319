// The seeds' examples, translated in docs/examples, built as plugins and run through the host.
#include "plugin_fixtures.hpp"

#include <shrink/host/masker_instance.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include <gtest/gtest.h>
#include <torch/torch.h>

using shrink::test::registry_of;
using shrink::test::test_plugins;

namespace {

torch::Tensor reference_fake_quant(const torch::Tensor& x, int bits) {
  const double qmax = (1 << (bits - 1)) - 1;
  torch::Tensor scale = x.abs().max() / qmax;
  return (x / scale).round().clamp(-qmax, qmax) * scale;
}

shrink::SiteSpec site(const std::string& target, shrink::QuantType type, int bits = 8) {
  shrink::SiteSpec spec;
  spec.module_name = "conv1";
  spec.module_type = "Conv2d";
  spec.target = target;
  spec.quant_type = type;
  spec.config.set("quant_bits", std::to_string(bits));
  return spec;
}

}  // namespace

TEST(SeedExamplesTest, YourQuantizerQuantizesWeightWithItsConfig) {
  auto registry = registry_of({test_plugins("seed_examples")});
  shrink::QuantizerInstance q(registry->require("your_quantizer"), {});
  int s8 = q.add_site(site("weight", shrink::QuantType::kWeight, 8));
  int s4 = q.add_site(site("weight", shrink::QuantType::kWeight, 4));
  torch::manual_seed(1);
  torch::Tensor w = torch::randn({6, 3, 3, 3});
  EXPECT_TRUE(torch::allclose(q.quantize(s8, w), reference_fake_quant(w, 8)));
  torch::Tensor w4 = q.quantize(s4, w);
  EXPECT_TRUE(torch::allclose(w4, reference_fake_quant(w, 4)));
  // 4 bits: at most 15 distinct levels.
  EXPECT_LE(std::get<0>(at::_unique(w4)).numel(), 15);
}

TEST(SeedExamplesTest, DefaultBackwardIsStraightThrough) {
  auto registry = registry_of({test_plugins("seed_examples")});
  shrink::QuantizerInstance q(registry->require("your_quantizer"), {});
  EXPECT_FALSE(q.has_quant_grad());
  int s = q.add_site(site("_output_", shrink::QuantType::kOutput));
  torch::Tensor x = torch::tensor({-2.0f, -0.5f, 0.5f, 2.0f}).requires_grad_(true);
  torch::Tensor upstream = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f});
  (q.quantize(s, x) * upstream).sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), upstream));
}

TEST(SeedExamplesTest, CustomQuantGradIsTheBackwardUsed) {
  auto registry = registry_of({test_plugins("seed_examples")});
  shrink::QuantizerInstance q(registry->require("your_quantizer_clip"), {});
  EXPECT_TRUE(q.has_quant_grad());
  int out = q.add_site(site("_output_", shrink::QuantType::kOutput));
  int weight = q.add_site(site("weight", shrink::QuantType::kWeight));
  torch::Tensor upstream = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f});

  // ClipGrad zeroes the output gradient where |x| > 1 ...
  torch::Tensor x = torch::tensor({-2.0f, -0.5f, 0.5f, 2.0f}).requires_grad_(true);
  (q.quantize(out, x) * upstream).sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), torch::tensor({0.0f, 2.0f, 3.0f, 0.0f})));

  // ... and leaves weight gradients alone, as the seed's code says.
  torch::Tensor w = torch::tensor({-2.0f, -0.5f, 0.5f, 2.0f}).requires_grad_(true);
  (q.quantize(weight, w) * upstream).sum().backward();
  EXPECT_TRUE(torch::equal(w.grad(), upstream));
}

TEST(SeedExamplesTest, MyPrunerMasksTheSmallestWeights) {
  auto registry = registry_of({test_plugins("seed_examples")});
  const shrink::AlgorithmInfo& alg = registry->require("my_pruner");
  EXPECT_TRUE(alg.is_pruner());
  shrink::MaskerInstance pruner(alg, {});
  EXPECT_FALSE(pruner.ranks_in_training());
  torch::Tensor w = torch::arange(1, 17, torch::kFloat).reshape({4, 4}) *
                    torch::tensor({1.0f, -1.0f, 1.0f, -1.0f});
  shrink::Masks masks = pruner.calc_mask(0.75, {"fc1", "Linear", {}, w, torch::zeros({4})}, 0);
  // |w| = 1..16: the 12 smallest are masked, 13..16 are kept.
  torch::Tensor expected = (w.abs() > 12).to(torch::kFloat);
  EXPECT_TRUE(torch::equal(masks.weight_mask, expected));
  EXPECT_FALSE(masks.bias_mask.defined());
  pruner.update_epoch(1);
  pruner.step();
}
