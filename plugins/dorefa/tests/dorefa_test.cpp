// The dorefa plugin, loaded from the built plugin folder: forward against a naive element-wise
// implementation of the paper's formulas, the straight-through backward, and a short training run.
#include "plugin_fixtures.hpp"

#include <shrink/core/error.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace {

class DorefaTest : public ::testing::Test {
 protected:
  DorefaTest()
      : registry_(shrink::test::registry_of({shrink::test::kPluginDir})),
        q_(std::make_unique<shrink::QuantizerInstance>(registry_->require("dorefa"),
                                                       shrink::Options{})) {
    q_->set_training(true);
  }
  int site(shrink::QuantType type, int bits) {
    shrink::SiteSpec spec;
    spec.module_name = "conv2";
    spec.module_type = "Conv2d";
    spec.target = type == shrink::QuantType::kWeight ? "weight" : "_output_0";
    spec.quant_type = type;
    spec.config.set("quant_bits", std::to_string(bits));
    return q_->add_site(spec);
  }
  std::unique_ptr<shrink::PluginRegistry> registry_;
  std::unique_ptr<shrink::QuantizerInstance> q_;
};

double quantize_k(double r, int k) {
  const double n = std::ldexp(1.0, k) - 1;
  return std::nearbyint(r * n) / n;
}

}  // namespace

TEST_F(DorefaTest, WeightsFollowThePapersFormula) {
  torch::manual_seed(0);
  for (int k : {1, 2, 4, 8}) {
    const int s = site(shrink::QuantType::kWeight, k);
    const at::Tensor w = torch::randn({8, 3, 3, 3});
    const at::Tensor y = q_->quantize(s, w);
    double max_t = 0;
    for (int64_t i = 0; i < w.numel(); ++i)
      max_t = std::max(max_t, std::abs(std::tanh(double(w.data_ptr<float>()[i]))));
    for (int64_t i = 0; i < w.numel(); ++i) {
      const double t = std::tanh(double(w.data_ptr<float>()[i]));
      const double expected = 2 * quantize_k(t / (2 * max_t) + 0.5, k) - 1;
      ASSERT_NEAR(y.data_ptr<float>()[i], expected, 1e-5) << "k=" << k << " i=" << i;
    }
    EXPECT_LE(y.max().item<float>(), 1.0f);
    EXPECT_GE(y.min().item<float>(), -1.0f);
    EXPECT_LE(std::get<0>(at::_unique(y)).numel(), (1 << k));
  }
}

TEST_F(DorefaTest, ActivationsAreClippedToUnitRangeAndQuantized) {
  const int s = site(shrink::QuantType::kOutput, 2);
  const at::Tensor x = torch::tensor({-0.5f, 0.0f, 0.1f, 0.2f, 0.5f, 0.9f, 1.0f, 3.0f});
  // 2 bits: the grid {0, 1/3, 2/3, 1}.
  const at::Tensor expected =
      torch::tensor({0.0f, 0.0f, 0.0f, 1.0f / 3, 2.0f / 3, 1.0f, 1.0f, 1.0f});
  EXPECT_TRUE(torch::allclose(q_->quantize(s, x), expected, 0, 1e-6));
}

TEST_F(DorefaTest, BackwardIsStraightThroughTheRounding) {
  torch::manual_seed(1);
  const int sw = site(shrink::QuantType::kWeight, 4);
  const int sa = site(shrink::QuantType::kOutput, 4);
  const at::Tensor w = torch::randn({5, 7}).requires_grad_(true);
  const at::Tensor up = torch::randn({5, 7});
  (q_->quantize(sw, w) * up).sum().backward();
  // d/dw of 2 * (tanh(w) / (2 max|tanh w|) + 1/2) - 1 with max|tanh| held: (1 - tanh^2) / max.
  const at::Tensor t = torch::tanh(w.detach());
  EXPECT_TRUE(torch::allclose(w.grad(), up * (1 - t * t) / t.abs().max(), 1e-5, 1e-7));
  // Against finite differences of the same function without the rounding (the part the estimator
  // passes through), one element.
  const double eps = 1e-3;
  auto smooth = [&](const at::Tensor& v) {
    return (torch::tanh(v) / torch::tanh(w.detach()).abs().max() * up).sum().item<double>();
  };
  at::Tensor plus = w.detach().clone(), minus = w.detach().clone();
  plus[2][3] += eps;
  minus[2][3] -= eps;
  EXPECT_NEAR(w.grad()[2][3].item<double>(), (smooth(plus) - smooth(minus)) / (2 * eps), 1e-3);

  const at::Tensor a = torch::tensor({-0.3f, 0.2f, 0.7f, 1.4f}).requires_grad_(true);
  (q_->quantize(sa, a) * torch::ones({4})).sum().backward();
  EXPECT_TRUE(torch::equal(a.grad(), torch::tensor({0.0f, 1.0f, 1.0f, 0.0f})));
}

TEST(DorefaOptions, MaxAbsKeepsTheLayersRange) {
  auto registry = shrink::test::registry_of({shrink::test::kPluginDir});
  shrink::Options options;
  options.set("weight_scale", "max_abs");
  shrink::QuantizerInstance q(registry->require("dorefa"), options);
  q.set_training(true);
  shrink::SiteSpec spec;
  spec.module_name = "fc1";
  spec.target = "weight";
  spec.config.set("quant_bits", "4");
  const int s = q.add_site(spec);
  torch::manual_seed(2);
  const at::Tensor w = (torch::randn({6, 9}) * 0.05).requires_grad_(true);
  const at::Tensor y = q.quantize(s, w);
  const at::Tensor t = torch::tanh(w.detach());
  const at::Tensor m = t.abs().max();
  const at::Tensor paper = 2 * ((t / (2 * m) + 0.5) * 15).round() / 15 - 1;
  EXPECT_TRUE(torch::allclose(y, paper * w.detach().abs().max(), 1e-5, 1e-7));
  EXPECT_NEAR(y.abs().max().item<float>(), w.detach().abs().max().item<float>(), 1e-6);
  y.sum().backward();
  EXPECT_TRUE(torch::allclose(w.grad(), (1 - t * t) / m * w.detach().abs().max(), 1e-5, 1e-7));

  options.set("weight_scale", "mean");
  EXPECT_THROW(shrink::QuantizerInstance(registry->require("dorefa"), options), shrink::Error);
}

TEST_F(DorefaTest, RefusesNineBits) {
  shrink::SiteSpec spec;
  spec.module_name = "conv2";
  spec.target = "weight";
  spec.config.set("quant_bits", "9");
  EXPECT_THROW(q_->add_site(spec), shrink::Error);
}

// y = Q(W) Q(x) regression with 2-bit weights and 8-bit activations in [0, 1]: the loss falls.
TEST_F(DorefaTest, ShortTrainingLowersTheLoss) {
  torch::manual_seed(4);
  const at::Tensor data = torch::rand({256, 16});
  const at::Tensor labels = data.matmul(torch::randn({4, 16}).sign().t()) * 0.2;
  const at::Tensor w = (torch::randn({4, 16}) * 0.1).requires_grad_(true);
  const int sw = site(shrink::QuantType::kWeight, 2);
  const int sx = site(shrink::QuantType::kOutput, 8);
  const at::Tensor gain = torch::ones({1}).requires_grad_(true);  // a float scale after the layer
  auto loss_of = [&](const at::Tensor& x, const at::Tensor& yt) {
    return (q_->quantize(sx, x).matmul(q_->quantize(sw, w).t()) * gain - yt).pow(2).mean();
  };
  torch::optim::SGD sgd(std::vector<at::Tensor>{w, gain}, torch::optim::SGDOptions(0.05));
  const double first = loss_of(data, labels).item<double>();
  for (int i = 0; i < 200; ++i) {
    const int64_t b = (i * 32) % 256;
    sgd.zero_grad();
    loss_of(data.narrow(0, b, 32), labels.narrow(0, b, 32)).backward();
    sgd.step();
  }
  const double last = loss_of(data, labels).item<double>();
  EXPECT_LT(last, 0.5 * first) << first << " -> " << last;
}
