#include "test_paths.hpp"

#include <shrink/core/error.hpp>
#include <shrink/graph/model.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace {

std::string model_path(const std::string& name) {
  return std::string(shrink::test::kTestModelDir) + "/" + name + ".pt";
}

std::vector<std::string> names_of_type(const shrink::Model& model, const std::string& type) {
  std::vector<std::string> names;
  for (const auto& op : model.ops()) {
    if (op.type == type) names.push_back(op.name);
  }
  return names;
}

}  // namespace

TEST(ModelTest, FindsTheSeedNetsModuleOps) {
  shrink::Model model = shrink::Model::load(model_path("mnist"));
  using V = std::vector<std::string>;
  EXPECT_EQ(names_of_type(model, "Conv2d"), (V{"conv1", "conv2"}));
  EXPECT_EQ(names_of_type(model, "Linear"), (V{"fc1", "fc2"}));
  EXPECT_EQ(names_of_type(model, "ReLU6"), (V{"relu1", "relu2", "relu3"}));
  EXPECT_EQ(names_of_type(model, "BatchNorm2d"), (V{"batchnorm1"}));
  EXPECT_EQ(names_of_type(model, "MaxPool2d"), (V{"max_pool1", "max_pool2"}));
  const shrink::OpInstance* conv1 = model.find_op("conv1");
  ASSERT_NE(conv1, nullptr);
  EXPECT_TRUE(conv1->has_weight);
  EXPECT_TRUE(conv1->has_bias);
  EXPECT_FALSE(conv1->functional);
  EXPECT_FALSE(model.find_op("relu1")->has_weight);
}

TEST(ModelTest, InstancesSharingAClassTypeKeepTheirOwnNames) {
  shrink::Model model = shrink::Model::load(model_path("resnet_small"));
  using V = std::vector<std::string>;
  EXPECT_EQ(names_of_type(model, "Conv2d"),
            (V{"stem", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2"}));
  // Functional calls are ops too, named after the module whose code makes them.
  EXPECT_EQ(names_of_type(model, "add"), (V{"layer1.0.add", "layer1.1.add"}));
  EXPECT_EQ(names_of_type(model, "relu"),
            (V{"relu", "layer1.0.relu", "layer1.0.relu_1", "layer1.1.relu", "layer1.1.relu_1"}));
  EXPECT_TRUE(model.find_op("layer1.0.add")->functional);
  EXPECT_FALSE(model.find_op("layer1.1.conv2")->has_bias);
}

TEST(ModelTest, FindsTorchvisionResnet18Ops) {
  shrink::Model model = shrink::Model::load(model_path("resnet18"));
  EXPECT_EQ(names_of_type(model, "Conv2d").size(), 20u);  // 17 convs + 3 downsample convs
  EXPECT_NE(model.find_op("layer4.1.conv2"), nullptr);
  EXPECT_NE(model.find_op("layer2.0.downsample.0"), nullptr);
  EXPECT_EQ(names_of_type(model, "add").size(), 8u);  // one residual add per BasicBlock
  EXPECT_NE(model.find_op("layer3.1.add"), nullptr);
}

TEST(ModelTest, BadFilesGetOneClearLine) {
  EXPECT_THROW(shrink::Model::load("/nonexistent/model.pt"), shrink::Error);
  const std::string text = std::filesystem::temp_directory_path() / "shrink_not_a_model.pt";
  std::ofstream(text) << "hello";
  try {
    shrink::Model::load(text);
    FAIL() << "a text file must not load";
  } catch (const shrink::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(text + ": not a loadable TorchScript model"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  std::filesystem::remove(text);
}

// The model as its user wrote it: `F.relu` at the top level and in residual blocks
// (TorchScript inlines F.relu as a branch on its `inplace` argument), F.adaptive_avg_pool2d.
TEST(ModelTest, FunctionalCallsInScriptedCodeAreOps) {
  shrink::Model model = shrink::Model::load(model_path("own_cifar"));
  using V = std::vector<std::string>;
  EXPECT_EQ(names_of_type(model, "relu"),
            (V{"relu", "res1.relu", "res2.relu", "relu_1", "relu_2"}));
  EXPECT_EQ(names_of_type(model, "add"), (V{"res1.add", "res2.add"}));
  EXPECT_EQ(names_of_type(model, "adaptive_avg_pool2d"), (V{"adaptive_avg_pool2d"}));
  EXPECT_TRUE(model.find_op("relu_1")->functional);
}

// torch.jit.trace records the same calls: a traced model has the scripted one's op names.
TEST(ModelTest, ATracedModelHasTheScriptedModelsOps) {
  shrink::Model scripted = shrink::Model::load(model_path("own_cifar"));
  shrink::Model traced = shrink::Model::load(model_path("own_cifar_traced"));
  std::vector<std::string> a, b;
  for (const auto& op : scripted.ops()) a.push_back(op.name + " " + op.type);
  for (const auto& op : traced.ops()) b.push_back(op.name + " " + op.type);
  EXPECT_EQ(a, b);
}
