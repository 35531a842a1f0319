#include "plugin_fixtures.hpp"

#include <shrink/core/error.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include <gtest/gtest.h>
#include <torch/torch.h>

using shrink::test::registry_of;
using shrink::test::test_plugins;

namespace {

shrink::SiteSpec site(const std::string& module, const std::string& target,
                      shrink::QuantType type) {
  shrink::SiteSpec spec;
  spec.module_name = module;
  spec.module_type = "Conv2d";
  spec.target = target;
  spec.quant_type = type;
  return spec;
}

}  // namespace

TEST(QuantizerTest, CPluginRoundsThroughTheHostApi) {
  auto registry = registry_of({test_plugins("c_round")});
  shrink::Options options;
  options.set("step", "0.25");
  shrink::QuantizerInstance q(registry->require("c_round"), options);
  int s = q.add_site(site("conv1", "weight", shrink::QuantType::kWeight));
  torch::Tensor w = torch::tensor({{0.1f, 0.3f}, {-0.6f, 0.9f}});
  torch::Tensor expected = torch::tensor({{0.0f, 0.25f}, {-0.5f, 1.0f}});
  EXPECT_TRUE(torch::equal(q.quantize(s, w), expected));
}

TEST(QuantizerTest, PluginOptionErrorsReachTheUser) {
  auto registry = registry_of({test_plugins("c_round")});
  shrink::Options options;
  options.set("stepp", "1");
  try {
    shrink::QuantizerInstance q(registry->require("c_round"), options);
    FAIL() << "an unknown option must be rejected";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown option 'stepp' (allowed: step)"),
              std::string::npos)
        << e.what();
  }
}

TEST(QuantizerTest, SiteSetupRejectionNamesTheSite) {
  auto registry = registry_of({test_plugins("c_round")});
  shrink::QuantizerInstance q(registry->require("c_round"), {});
  try {
    q.add_site(site("relu1", "_output_", shrink::QuantType::kOutput));
    FAIL() << "c_round must reject an output site";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("relu1._output_"), std::string::npos) << e.what();
  }
}

TEST(QuantizerTest, LearnableStateGetsPluginGradientAndTrains) {
  auto registry = registry_of({test_plugins("learnable")});
  shrink::QuantizerInstance q(registry->require("learnable_step"), {});
  int s = q.add_site(site("fc1", "_input_", shrink::QuantType::kInput));
  ASSERT_EQ(q.parameters().size(), 1u);
  torch::Tensor step = q.parameters()[0];
  EXPECT_TRUE(step.requires_grad());
  EXPECT_FLOAT_EQ(step.item<float>(), 0.5f);

  torch::Tensor x = torch::tensor({0.2f, 0.9f, -1.3f, 2.2f}).requires_grad_(true);
  torch::Tensor upstream = torch::tensor({1.0f, -2.0f, 0.5f, 3.0f});
  torch::Tensor y = q.quantize(s, x);
  EXPECT_TRUE(torch::allclose(y.detach(), (x.detach() / 0.5).round() * 0.5));
  (y * upstream).sum().backward();

  // Input gradient: straight-through. Step gradient: the plugin's closed form.
  EXPECT_TRUE(torch::allclose(x.grad(), upstream));
  torch::Tensor v = x.detach() / 0.5;
  float expected_step_grad = (upstream * (v.round() - v)).sum().item<float>();
  ASSERT_TRUE(step.grad().defined());
  EXPECT_NEAR(step.grad().item<float>(), expected_step_grad, 1e-6);

  // The host hands the parameter to an optimizer like any other.
  torch::optim::SGD sgd(std::vector<torch::Tensor>{step}, torch::optim::SGDOptions(0.1));
  sgd.step();
  EXPECT_NEAR(step.item<float>(), 0.5f - 0.1f * expected_step_grad, 1e-6);
  // The plugin sees the new value on the next call, and its buffer counted both calls.
  torch::Tensor y2 = q.quantize(s, x.detach());
  EXPECT_TRUE(torch::allclose(y2, (x.detach() / step.detach()).round() * step.detach()));
  EXPECT_EQ(q.site_state(s)[1].name, "calls");
  EXPECT_EQ(q.site_state(s)[1].value.item<float>(), 2.0f);
}

TEST(QuantizerTest, StatePerSiteIsSeparate) {
  auto registry = registry_of({test_plugins("learnable")});
  shrink::QuantizerInstance q(registry->require("learnable_step"), {});
  int a = q.add_site(site("layer1.0.conv1", "_input_", shrink::QuantType::kInput));
  int b = q.add_site(site("layer1.1.conv1", "_input_", shrink::QuantType::kInput));
  q.quantize(a, torch::ones({3}));
  q.quantize(a, torch::ones({3}));
  q.quantize(b, torch::ones({3}));
  EXPECT_EQ(q.site_state(a)[1].value.item<float>(), 2.0f);
  EXPECT_EQ(q.site_state(b)[1].value.item<float>(), 1.0f);
}

// The host keeps one handle per state tensor and the SDK keeps what it converted from it: a state
// updated in place (an optimizer step, a checkpoint restored) and a state replaced by a new tensor
// must both reach the plugin.
TEST(QuantizerTest, StateUpdatedInPlaceOrReplacedReachesThePlugin) {
  auto registry = registry_of({test_plugins("learnable")});
  shrink::QuantizerInstance q(registry->require("learnable_step"), {});
  int s = q.add_site(site("fc1", "_input_", shrink::QuantType::kInput));
  const torch::Tensor x = torch::tensor({0.3f, 1.1f});
  EXPECT_TRUE(torch::allclose(q.quantize(s, x), torch::tensor({0.5f, 1.0f})));
  {
    torch::NoGradGuard no_grad;
    q.site_state(s)[0].value.fill_(0.25f);  // in place
  }
  EXPECT_TRUE(torch::allclose(q.quantize(s, x), torch::tensor({0.25f, 1.0f})));
  q.site_state(s)[0].value = torch::full({1}, 0.4f).requires_grad_(true);  // a new tensor
  EXPECT_TRUE(torch::allclose(q.quantize(s, x), torch::tensor({0.4f, 1.2f})));
  EXPECT_EQ(q.site_state(s)[1].value.item<float>(), 3.0f);  // the plugin's own buffer, in place
}

TEST(QuantizerTest, PluginLogsThroughTheHostLogger) {
  auto registry = registry_of({test_plugins("learnable")});
  shrink::QuantizerInstance q(registry->require("learnable_step"), {});
  testing::internal::CaptureStderr();
  q.add_site(site("fc2", "_input_", shrink::QuantType::kInput));
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("shrink: info: [learnable] set up site fc2._input_"), std::string::npos)
      << err;
}
