// Channel removal on real TorchScript models: pruned channels go, the outputs stay, the smaller
// model reloads in plain LibTorch; residual adds remove only what every joined producer prunes;
// depthwise convolutions (mobilenet_v2) follow; an op it cannot follow is named.
#include "plugin_fixtures.hpp"
#include "sigmoid_net.hpp"

#include <shrink/config/config_list.hpp>
#include <shrink/core/error.hpp>
#include <shrink/graph/channel_removal.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/prune/pruning_stage.hpp>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>

#include <unistd.h>

namespace {

std::string model_file(const std::string& name) {
  return std::string(shrink::test::kTestModelDir) + "/" + name + ".pt";
}

at::Tensor param(torch::jit::Module m, const std::string& path) {
  std::string rest = path;
  for (std::size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
    m = m.attr(rest.substr(0, dot)).toModule();
  }
  return m.attr(rest).toTensor();
}

// Zeroes output channels `channels` of a module's weight and bias (a pruned filter), and of a
// BatchNorm's gamma and beta (a channel the BatchNorm zeroes).
void zero_channels(torch::jit::Module& m, const std::string& name,
                   const std::vector<int64_t>& channels) {
  torch::NoGradGuard no_grad;
  for (const char* p : {"weight", "bias"}) {
    torch::jit::Module owner = m;
    std::string rest = name;
    for (std::size_t dot; (dot = rest.find('.')) != std::string::npos;
         rest = rest.substr(dot + 1)) {
      owner = owner.attr(rest.substr(0, dot)).toModule();
    }
    owner = owner.attr(rest).toModule();
    if (!owner.hasattr(p) || !owner.attr(p).isTensor()) continue;
    at::Tensor t = owner.attr(p).toTensor();
    for (int64_t c : channels) t[c].zero_();
  }
}

double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

struct Outcome {
  shrink::ChannelRemoval removal;
  double difference;
};

// Removes channels from `m` in place; checks the outputs against the masked model's and that
// the saved, reloaded model computes the same.
Outcome remove_and_check(torch::jit::Module& m, const at::Tensor& x) {
  torch::NoGradGuard no_grad;
  m.eval();
  const at::Tensor before = m.forward({x}).toTensor();
  Outcome o{shrink::remove_pruned_channels(m), 0};
  const at::Tensor after = m.forward({x}).toTensor();
  EXPECT_EQ(after.sizes(), before.sizes());
  o.difference = relative_difference(after, before);
  // One file per test and process: ctest runs these tests in parallel.
  const std::string file = ::testing::TempDir() + "/removed_" +
                           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
                           std::to_string(::getpid()) + ".pt";
  m.save(file);
  torch::jit::Module reloaded = torch::jit::load(file);
  reloaded.eval();
  EXPECT_LT(relative_difference(reloaded.forward({x}).toTensor(), before), 1e-4);
  std::filesystem::remove(file);
  return o;
}

TEST(ChannelRemoval, MnistLosesPrunedFiltersAndTheirReaders) {
  torch::manual_seed(0);
  torch::jit::Module m = torch::jit::load(model_file("mnist"));
  // conv1 -> batchnorm1 (both pruned) -> conv2 -> view(-1, 800) -> fc1 -> fc2.
  zero_channels(m, "conv1", {0, 3, 7});
  zero_channels(m, "batchnorm1", {0, 3, 7});
  zero_channels(m, "conv2", {1, 2, 10, 49});
  zero_channels(m, "fc1", {5, 6, 400});
  const auto o = remove_and_check(m, torch::randn({8, 1, 28, 28}));
  EXPECT_LT(o.difference, 1e-4);
  EXPECT_EQ(param(m, "conv1.weight").sizes(), (std::vector<int64_t>{17, 1, 5, 5}));
  EXPECT_EQ(param(m, "batchnorm1.running_mean").size(0), 17);
  EXPECT_EQ(param(m, "conv2.weight").sizes(), (std::vector<int64_t>{46, 17, 5, 5}));
  EXPECT_EQ(param(m, "fc1.weight").sizes(), (std::vector<int64_t>{497, 46 * 16}));
  EXPECT_EQ(param(m, "fc2.weight").sizes(), (std::vector<int64_t>{10, 497}));
  EXPECT_EQ(o.removal.channels_removed, 3 + 4 + 3);
  EXPECT_LT(o.removal.parameters_after, o.removal.parameters_before);
}

TEST(ChannelRemoval, AZeroFilterBeforeANonZeroingBatchNormStays) {
  // conv1's filter 0 is zero, but batchnorm1 maps it to beta - gamma * mean / std: not zero, so
  // conv2 reads it and nothing may go.
  torch::jit::Module m = torch::jit::load(model_file("mnist"));
  {
    torch::NoGradGuard no_grad;
    param(m, "batchnorm1.bias").fill_(0.5);
  }
  zero_channels(m, "conv1", {0});
  const auto o = remove_and_check(m, torch::randn({4, 1, 28, 28}));
  EXPECT_LT(o.difference, 1e-6);
  EXPECT_EQ(param(m, "conv1.weight").size(0), 20);
  EXPECT_EQ(o.removal.channels_removed, 0);
}

TEST(ChannelRemoval, ResidualAddRemovesOnlyWhatEveryProducerPrunes) {
  torch::jit::Module m = torch::jit::load(model_file("resnet_small"));
  {
    torch::NoGradGuard no_grad;  // BatchNorm statistics away from the identity
    for (const auto& b : m.named_buffers()) {
      if (b.name.find("running_var") != std::string::npos) b.value.uniform_(0.5, 2.0);
      if (b.name.find("running_mean") != std::string::npos) b.value.uniform_(-0.5, 0.5);
    }
  }
  // The residual group: stem, layer1.0.bn2, layer1.1.bn2 all feed the adds. Channel 1 is pruned
  // by all three producers; channel 2 by the stem only (the blocks' bn2 still write it).
  zero_channels(m, "stem", {1, 2});
  for (const char* block : {"layer1.0", "layer1.1"}) {
    zero_channels(m, std::string(block) + ".conv2", {1});
    zero_channels(m, std::string(block) + ".bn2", {1});
  }
  // Inside block 0: conv1's filters 3 and 5 (and bn1's channels): conv1 out and conv2 in shrink.
  zero_channels(m, "layer1.0.conv1", {3, 5});
  zero_channels(m, "layer1.0.bn1", {3, 5});
  const auto o = remove_and_check(m, torch::randn({4, 1, 28, 28}));
  EXPECT_LT(o.difference, 1e-4);
  EXPECT_EQ(param(m, "stem.weight").size(0), 7);
  EXPECT_EQ(param(m, "layer1.1.conv2.weight").size(0), 7);
  EXPECT_EQ(param(m, "layer1.1.bn2.running_var").size(0), 7);
  EXPECT_EQ(param(m, "layer1.0.conv1.weight").sizes(), (std::vector<int64_t>{6, 7, 3, 3}));
  EXPECT_EQ(param(m, "layer1.0.conv2.weight").sizes(), (std::vector<int64_t>{7, 6, 3, 3}));
  EXPECT_EQ(param(m, "fc.weight").sizes(), (std::vector<int64_t>{10, 7}));
}

TEST(ChannelRemoval, MobileNetV2AfterL1FilterPruning) {
  // A real architecture through the host's pruning: l1_norm at 0.5 on every convolution (their
  // BatchNorms follow), then removal: depthwise convolutions lose the channels of the expansion
  // before them; residual groups keep what any producer keeps.
  auto registry = shrink::test::registry_of({shrink::test::kPluginDir});
  shrink::Model model = shrink::Model::load(model_file("mobilenet_v2"));
  const auto targets = shrink::plan_pruning(
      shrink::ConfigList::parse_text("- op_types: [Conv2d]\n  sparse_ratio: 0.5\n", "t.yaml"),
      model.ops());
  shrink::PruningStage stage(registry->require("l1_norm"), {}, targets, model.module(),
                             "compress[0]");
  EXPECT_GT(stage.followers().size(), 40u);
  stage.update(shrink::Schedule::kOneShot, 1, 1);
  const auto o = remove_and_check(model.module(), torch::randn({2, 3, 32, 32}));
  EXPECT_LT(o.difference, 1e-4);
  EXPECT_GT(o.removal.channels_removed, 1000);
  EXPECT_LT(static_cast<double>(o.removal.parameters_after),
            0.7 * static_cast<double>(o.removal.parameters_before));
  bool depthwise_resized = false;
  for (const auto& r : o.removal.modules) {
    if (r.name == "features.2.conv.1.0") depthwise_resized = r.out_after < r.out_before;
  }
  EXPECT_TRUE(depthwise_resized);
}

TEST(ChannelRemoval, DepthwiseConvolutionSharesTheMaskOfTheChannelsItReads) {
  // own_cifar's depthwise conv reads the residual stream: pruned with its own mask, only the
  // channels both masks happened to prune could go (10 of 16); with the stream's mask, all 16.
  auto registry = shrink::test::registry_of({shrink::test::kPluginDir});
  shrink::Model model = shrink::Model::load(model_file("own_cifar"));
  EXPECT_EQ(
      shrink::channel_dependency_groups(model.module()),
      (std::vector<std::vector<std::string>>{{"stem_conv", "res1.block.3", "res2.block.3", "dw"}}));
  const auto targets = shrink::plan_pruning(
      shrink::ConfigList::parse_text("- op_types: [Conv2d]\n  sparse_ratio: 0.5\n", "t.yaml"),
      model.ops());
  shrink::PruningStage stage(registry->require("l1_norm"), {}, targets, model.module(),
                             "compress[0]");
  stage.update(shrink::Schedule::kOneShot, 1, 1);
  const auto o = remove_and_check(model.module(), torch::randn({2, 3, 32, 32}));
  EXPECT_LT(o.difference, 1e-4);
  EXPECT_EQ(param(model.module(), "dw.weight").sizes(), (std::vector<int64_t>{16, 1, 3, 3}));
  EXPECT_EQ(param(model.module(), "stem_conv.weight").size(0), 16);
  EXPECT_EQ(param(model.module(), "pw.weight").sizes(), (std::vector<int64_t>{32, 16, 1, 1}));
}

TEST(ChannelRemoval, SaysWhyPrunedFiltersStay) {
  // Only the stem pruned: its channels are the residual stream's, which the blocks' last
  // convolutions (not pruned) keep writing, so none can go; removal says so and by whom.
  auto registry = shrink::test::registry_of({shrink::test::kPluginDir});
  shrink::Model model = shrink::Model::load(model_file("own_cifar"));
  const auto targets = shrink::plan_pruning(
      shrink::ConfigList::parse_text("- op_names: [stem_conv]\n  sparse_ratio: 0.5\n", "t.yaml"),
      model.ops());
  shrink::PruningStage stage(registry->require("l1_norm"), {}, targets, model.module(),
                             "compress[0]");
  stage.update(shrink::Schedule::kOneShot, 1, 1);
  const auto o = remove_and_check(model.module(), torch::randn({2, 3, 32, 32}));
  EXPECT_EQ(o.removal.channels_removed, 0);
  ASSERT_EQ(o.removal.kept_pruned.size(), 1u);
  EXPECT_EQ(o.removal.kept_pruned[0].name, "stem_conv");
  EXPECT_EQ(o.removal.kept_pruned[0].channels, 16);
  EXPECT_EQ(o.removal.kept_pruned[0].why,
            "its channels are also those of dw, res1.block.3, res2.block.3, which keep them");
}

TEST(ChannelRemoval, JoinedConvolutionsShareOneMaskAndShrinkTogether) {
  // l1_norm at 0.5 on every convolution of resnet_small: the stem and both blocks' conv2 feed the
  // residual adds, so they get one mask (their scores summed) and half the residual channels go.
  auto registry = shrink::test::registry_of({shrink::test::kPluginDir});
  shrink::Model model = shrink::Model::load(model_file("resnet_small"));
  EXPECT_EQ(shrink::channel_dependency_groups(model.module()),
            (std::vector<std::vector<std::string>>{{"stem", "layer1.0.conv2", "layer1.1.conv2"}}));
  const auto targets = shrink::plan_pruning(
      shrink::ConfigList::parse_text("- op_types: [Conv2d]\n  sparse_ratio: 0.5\n", "t.yaml"),
      model.ops());
  shrink::PruningStage stage(registry->require("l1_norm"), {}, targets, model.module(),
                             "compress[0]");
  ASSERT_EQ(stage.shared_masks().size(), 1u);
  EXPECT_EQ(stage.shared_masks()[0].size(), 3u);
  stage.update(shrink::Schedule::kOneShot, 1, 1);
  const auto& ops = stage.ops();
  for (std::size_t i : stage.shared_masks()[0]) {
    EXPECT_TRUE(torch::equal(ops[i].weight_mask.reshape({8, -1}).amax(1),
                             ops[stage.shared_masks()[0][0]].weight_mask.reshape({8, -1}).amax(1)));
  }
  const auto o = remove_and_check(model.module(), torch::randn({4, 1, 28, 28}));
  EXPECT_LT(o.difference, 1e-4);
  EXPECT_EQ(param(model.module(), "stem.weight").size(0), 4);
  EXPECT_EQ(param(model.module(), "layer1.0.conv1.weight").sizes(),
            (std::vector<int64_t>{4, 4, 3, 3}));
  EXPECT_EQ(param(model.module(), "fc.weight").sizes(), (std::vector<int64_t>{10, 4}));
}

// A module `name` computing torch.conv2d with its own weight and bias.
torch::jit::Module conv_module(int64_t out, int64_t in, int64_t k) {
  torch::jit::Module conv("Conv");
  conv.register_parameter("weight", torch::randn({out, in, k, k}), false);
  conv.register_parameter("bias", torch::randn({out}), false);
  conv.define("def forward(self, x):\n  return torch.conv2d(x, self.weight, self.bias)\n");
  return conv;
}

// a (4 filters, 1x1) and b (4 filters, b_kernel) read x; their outputs are concatenated into c
// (8 input channels, 3x3) by `forward`, as a Fire module's expand convolutions.
torch::jit::Module fire(const std::string& name, int64_t b_kernel, const std::string& forward) {
  torch::jit::Module net(name);
  net.register_module("a", conv_module(4, 3, 1));
  net.register_module("b", conv_module(4, 3, b_kernel));
  net.register_module("c", conv_module(5, 8, 3));
  net.define("def forward(self, x):\n" + forward);
  return net;
}

TEST(ChannelRemoval, ConcatenationCarriesEachInputsChannels) {
  // a's filter 1 and b's filter 2 go, so c loses input channels 1 and 6.
  torch::manual_seed(0);
  torch::jit::Module root = fire("Net", 3,
                                 "  y = torch.cat([torch.relu(self.a.forward(x)), "
                                 "torch.relu(torch.max_pool2d(self.b.forward(x), 1))], 1)\n"
                                 "  return self.c.forward(torch.flip(y, [1])[:, :, 1:-1, 1:-1])\n");
  // The flip of the channels above is an op the removal does not follow (the spatial slice it
  // follows): first without it.
  torch::jit::Module plain =
      fire("Plain", 1,
           "  y = torch.cat([torch.relu(self.a.forward(x)), torch.relu(self.b.forward(x))], 1)\n"
           "  return self.c.forward(y)\n");
  zero_channels(plain, "a", {1});
  zero_channels(plain, "b", {2});
  const auto o = remove_and_check(plain, torch::randn({2, 3, 9, 9}));
  EXPECT_LT(o.difference, 1e-4);
  EXPECT_EQ(param(plain, "a.weight").size(0), 3);
  EXPECT_EQ(param(plain, "b.weight").size(0), 3);
  EXPECT_EQ(param(plain, "c.weight").sizes(), (std::vector<int64_t>{5, 6, 3, 3}));
  // The model's output keeps its channels: c's pruned filter stays (zeroed, not removed).
  zero_channels(plain, "c", {0});
  const auto kept = remove_and_check(plain, torch::randn({2, 3, 9, 9}));
  EXPECT_EQ(param(plain, "c.weight").size(0), 5);
  EXPECT_EQ(kept.removal.channels_removed, 0);
  // Through the flip: named.
  zero_channels(root, "a", {1});
  try {
    shrink::remove_pruned_channels(root);
    FAIL() << "removal across a flip must fail";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot follow aten::flip"), std::string::npos)
        << e.what();
  }
}

TEST(ChannelRemoval, AModuleCalledTwiceIsNamed) {
  // The same convolution applied twice: its pruned filter feeds itself, which cannot shrink on
  // one side only.
  torch::jit::Module root("Twice");
  root.register_module("conv", conv_module(4, 4, 3));
  root.define(
      "def forward(self, x):\n  return self.conv.forward(torch.relu(self.conv.forward(x)))\n");
  zero_channels(root, "conv", {1});
  try {
    shrink::remove_pruned_channels(root);
    FAIL() << "removal around a module called twice must fail";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("a module called twice"), std::string::npos) << e.what();
  }
  EXPECT_EQ(param(root, "conv.weight").size(0), 4);
}

TEST(ChannelRemoval, NamesAnOpItCannotFollow) {
  // conv (pruned filter) -> sigmoid: sigmoid(0) = 0.5, so the channel is read as non-zero by an op
  // the removal does not know.
  torch::jit::Module root = shrink::test::conv_sigmoid_net(3);
  zero_channels(root, "conv", {2});
  try {
    shrink::remove_pruned_channels(root);
    FAIL() << "removal across sigmoid must fail";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot follow aten::sigmoid"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("pruned channels of conv"), std::string::npos) << e.what();
  }
  EXPECT_EQ(param(root, "conv.weight").size(0), 4);
}

}  // namespace
