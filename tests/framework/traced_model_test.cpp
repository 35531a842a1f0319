// A traced model after the load-time rewrite (graph/traced.hpp) computes what the same model
// scripted does, in training as in evaluation: torch.jit.trace records the mode it ran in as
// constants, and every convolution as aten::_convolution.
#include "test_paths.hpp"

#include <shrink/graph/model.hpp>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

namespace {

std::string model_path(const std::string& name) {
  return std::string(shrink::test::kTestModelDir) + "/" + name + ".pt";
}

at::Tensor forward(torch::jit::Module& module, const at::Tensor& x) {
  torch::manual_seed(7);  // the same dropout mask for both models
  return module.forward({x}).toTensor();
}

at::Tensor running_mean(const torch::jit::Module& module) {
  return module.attr("stem_bn").toModule().attr("running_mean").toTensor().clone();
}

TEST(TracedModelTest, TrainsAndEvaluatesAsTheScriptedModel) {
  torch::jit::Module scripted = shrink::load_torchscript(model_path("own_cifar"));
  torch::jit::Module traced = shrink::load_torchscript(model_path("own_cifar_traced"));
  torch::manual_seed(0);
  const at::Tensor x = torch::randn({8, 3, 32, 32});
  // Traced in eval mode: before the rewrite, BatchNorm kept its running statistics in training
  // and dropout dropped nothing.
  scripted.train();
  traced.train();
  const at::Tensor before = running_mean(traced);
  const at::Tensor trained = forward(scripted, x);
  EXPECT_TRUE(torch::allclose(forward(traced, x), trained, 1e-5, 1e-5));
  EXPECT_FALSE(torch::equal(running_mean(traced), before)) << "BatchNorm did not learn";
  EXPECT_TRUE(torch::allclose(running_mean(traced), running_mean(scripted)));
  scripted.eval();
  traced.eval();
  EXPECT_TRUE(torch::allclose(forward(traced, x), forward(scripted, x), 1e-5, 1e-5));
}

TEST(TracedModelTest, ConvolutionsAreTheCallsScriptingRecords) {
  torch::jit::Module traced = shrink::load_torchscript(model_path("own_cifar_traced"));
  int conv2d = 0;
  for (const auto& item : traced.named_modules()) {
    for (const auto& method : item.value.get_methods()) {
      for (const torch::jit::Node* node : method.graph()->nodes()) {
        EXPECT_NE(node->kind().toQualString(), std::string("aten::_convolution")) << item.name;
        conv2d += node->kind().toQualString() == std::string("aten::conv2d") ? 1 : 0;
      }
    }
  }
  EXPECT_EQ(conv2d, 7);  // stem, two per residual block, depthwise, pointwise
}

}  // namespace
