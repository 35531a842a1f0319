// The bnn plugin, loaded from the built plugin folder: sign forward (0 -> +1), the saturating
// straight-through backward, the weight clip in its step hook, and a short training run.
#include "plugin_fixtures.hpp"

#include <shrink/core/error.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

class BnnTest : public ::testing::Test {
 protected:
  BnnTest()
      : registry_(shrink::test::registry_of({shrink::test::kPluginDir})),
        q_(std::make_unique<shrink::QuantizerInstance>(registry_->require("bnn"),
                                                       shrink::Options{})) {
    q_->set_training(true);
  }
  int site(shrink::QuantType type, const std::string& bits = "1") {
    shrink::SiteSpec spec;
    spec.module_name = "fc1";
    spec.module_type = "Linear";
    spec.target = type == shrink::QuantType::kWeight ? "weight" : "_output_0";
    spec.quant_type = type;
    if (!bits.empty()) spec.config.set("quant_bits", bits);
    return q_->add_site(spec);
  }
  std::unique_ptr<shrink::PluginRegistry> registry_;
  std::unique_ptr<shrink::QuantizerInstance> q_;
};

}  // namespace

TEST_F(BnnTest, SignWithZeroToPlusOne) {
  const int s = site(shrink::QuantType::kOutput, "1");
  const at::Tensor x = torch::tensor({-2.0f, -1e-7f, 0.0f, 1e-7f, 0.4f, 3.0f});
  EXPECT_TRUE(
      torch::equal(q_->quantize(s, x), torch::tensor({-1.0f, -1.0f, 1.0f, 1.0f, 1.0f, 1.0f})));
}

TEST_F(BnnTest, GradientIsZeroWherePastOne) {
  const int s = site(shrink::QuantType::kOutput);
  const at::Tensor x =
      torch::tensor({-1.5f, -1.0f, -0.2f, 0.0f, 0.9f, 1.0f, 1.01f}).requires_grad_(true);
  const at::Tensor up = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f});
  (q_->quantize(s, x) * up).sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), torch::tensor({0.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 0.0f})));
}

// The host passes the weight without a copy; the plugin's step hook clips the real-valued weight
// the optimizer moved.
TEST_F(BnnTest, StepClampsTheWeightsTheOptimizerMoved) {
  const int s = site(shrink::QuantType::kWeight);
  const at::Tensor w = torch::tensor({{0.5f, -0.9f}, {0.95f, 0.1f}}).requires_grad_(true);
  (q_->quantize(s, w) * torch::tensor({{-10.0f, 10.0f}, {-10.0f, 0.0f}})).sum().backward();
  torch::optim::SGD sgd(std::vector<at::Tensor>{w}, torch::optim::SGDOptions(0.1));
  sgd.step();  // 0.5 + 1 = 1.5, -0.9 - 1 = -1.9, 0.95 + 1 = 1.95
  EXPECT_FLOAT_EQ(w[0][0].item<float>(), 1.5f);
  q_->step();
  EXPECT_TRUE(torch::allclose(w.detach(), torch::tensor({{1.0f, -1.0f}, {1.0f, 0.1f}})));
  // Evaluation forwards are not training: they leave nothing for step() to clip.
  q_->set_training(false);
  const at::Tensor other = torch::tensor({5.0f, -5.0f});
  const int e = site(shrink::QuantType::kWeight);
  q_->quantize(e, other);
  q_->step();
  EXPECT_TRUE(torch::equal(other, torch::tensor({5.0f, -5.0f})));
}

TEST_F(BnnTest, RefusesMoreThanOneBit) {
  EXPECT_THROW(site(shrink::QuantType::kWeight, "2"), shrink::Error);
  EXPECT_THROW(site(shrink::QuantType::kWeight, "8"), shrink::Error);  // what unset resolves to
}

// A binary linear classifier (sign(W) sign(x), a float gain) on separable data: the loss falls.
TEST_F(BnnTest, ShortTrainingLowersTheLoss) {
  torch::manual_seed(5);
  const at::Tensor data = torch::randn({256, 32});
  const at::Tensor labels = data.matmul(torch::randn({32}).sign()).sign();
  const at::Tensor w = (torch::rand({1, 32}) - 0.5).mul(0.2).requires_grad_(true);
  const at::Tensor gain = torch::full({1}, 0.1).requires_grad_(true);
  const int sw = site(shrink::QuantType::kWeight);
  const int sx = site(shrink::QuantType::kOutput);
  auto loss_of = [&](const at::Tensor& x, const at::Tensor& yt) {
    const at::Tensor logits =
        q_->quantize(sx, x.clamp(-1, 1)).matmul(q_->quantize(sw, w).t()).squeeze(1) * gain;
    return torch::nn::functional::soft_margin_loss(logits, yt);
  };
  torch::optim::SGD sgd(std::vector<at::Tensor>{w, gain}, torch::optim::SGDOptions(0.05));
  const double first = loss_of(data, labels).item<double>();
  for (int i = 0; i < 300; ++i) {
    const int64_t b = (i * 32) % 256;
    sgd.zero_grad();
    loss_of(data.narrow(0, b, 32), labels.narrow(0, b, 32)).backward();
    sgd.step();
    q_->step();
  }
  const double last = loss_of(data, labels).item<double>();
  EXPECT_LT(last, 0.7 * first) << first << " -> " << last;
  EXPECT_LE(w.detach().abs().max().item<float>(), 1.0f);
}
