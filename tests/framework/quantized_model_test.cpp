#include "plugin_fixtures.hpp"

#include <shrink/config/config_list.hpp>
#include <shrink/graph/quantized_model.hpp>

#include <gtest/gtest.h>

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <filesystem>

using shrink::test::registry_of;
using shrink::test::test_plugins;

namespace {

std::string model_path(const std::string& name) {
  return std::string(shrink::test::kTestModelDir) + "/" + name + ".pt";
}

const char* kSeedConfig = R"(
- op_names: [conv1, conv2, fc1, fc2]
  target_names: [_input_, weight, _output_]
  quant_dtype: int8
  quant_scheme: affine
- op_names: [relu1, relu2, relu3]
  target_names: [_output_]
  quant_dtype: int8
  quant_scheme: affine
)";

std::vector<at::Tensor> model_parameters(torch::jit::Module& module) {
  std::vector<at::Tensor> params;
  for (const auto& p : module.parameters()) params.push_back(p);
  return params;
}

float calls(shrink::QuantizerInstance& q, int site) {
  return q.site_state(site)[0].value.item<float>();
}

}  // namespace

TEST(QuantizedModelTest, EverySiteOfTheSeedConfigIsCalledOncePerForward) {
  auto registry = registry_of({test_plugins("counting")});
  shrink::Model model = shrink::Model::load(model_path("mnist"));
  shrink::QuantizerInstance q(registry->require("counting"), {});
  auto sites = shrink::plan_sites(shrink::ConfigList::parse_text(kSeedConfig, "seed"), model.ops());
  shrink::QuantizedModel wrapped(model, q, sites);
  ASSERT_EQ(sites.size(), 15u);
  // The inputs of conv2, fc1 and fc2 are the outputs of relu1, relu2 and relu3 after pooling and
  // reshaping, which keep their values: one site quantizes each of those tensors.
  std::vector<std::string> merged;
  for (const auto& p : wrapped.shared_points()) {
    EXPECT_EQ(p.conflict, "");
    merged.push_back(p.site + " -> " + p.into);
  }
  EXPECT_EQ(merged, (std::vector<std::string>{"conv2._input_0 -> relu1._output_0",
                                              "fc1._input_0 -> relu2._output_0",
                                              "fc2._input_0 -> relu3._output_0"}));
  EXPECT_EQ(wrapped.shared_points()[1].through, (std::vector<std::string>{"max_pool2d", "view"}));
  ASSERT_EQ(wrapped.site_ids().size(), 12u);

  torch::manual_seed(0);
  wrapped.train(false);
  at::Tensor x = torch::randn({4, 1, 28, 28});
  at::Tensor y = wrapped.forward(x);
  for (int site : wrapped.site_ids())
    EXPECT_EQ(calls(q, site), 1.0f) << q.site_spec(site).module_name;
  wrapped.forward(x);
  for (int site : wrapped.site_ids()) EXPECT_EQ(calls(q, site), 2.0f);

  // An identity quantizer leaves the function unchanged.
  torch::jit::Module original = torch::jit::load(model_path("mnist"));
  original.eval();
  EXPECT_TRUE(torch::allclose(y, original.forward({x}).toTensor(), 1e-5, 1e-6));
}

// Two sites on one tensor with other settings both stay, and say which settings differ.
TEST(QuantizedModelTest, SitesOnOneTensorWithOtherSettingsStayApart) {
  auto registry = registry_of({test_plugins("counting")});
  shrink::Model model = shrink::Model::load(model_path("mnist"));
  shrink::QuantizerInstance q(registry->require("counting"), {});
  auto sites = shrink::plan_sites(shrink::ConfigList::parse_text(R"(
- op_names: [relu1]
  target_names: [_output_]
  quant_bits: 8
- op_names: [conv2]
  target_names: [_input_]
  quant_bits: 4
)",
                                                                 "cfg"),
                                  model.ops());
  shrink::QuantizedModel wrapped(model, q, sites);
  EXPECT_EQ(wrapped.sites().size(), 2u);
  ASSERT_EQ(wrapped.shared_points().size(), 1u);
  const auto& p = wrapped.shared_points()[0];
  EXPECT_EQ(p.text(),
            "conv2._input_0 and relu1._output_0 quantize the same tensor through max_pool2d with "
            "other settings (" +
                p.conflict +
                "): both stay, and an int8 model requantizes between "
                "them");
  EXPECT_NE(p.conflict.find("quant_bits 4 vs 8"), std::string::npos) << p.conflict;
  wrapped.train(false);
  wrapped.forward(torch::randn({2, 1, 28, 28}));
  for (int site : wrapped.site_ids()) EXPECT_EQ(calls(q, site), 1.0f);
}

TEST(QuantizedModelTest, FakeQuantizedSeedNetTrainsFromCpp) {
  auto registry = registry_of({test_plugins("seed_examples")});
  shrink::Model model = shrink::Model::load(model_path("mnist"));
  shrink::QuantizerInstance q(registry->require("your_quantizer"), {});
  auto sites = shrink::plan_sites(shrink::ConfigList::parse_text(kSeedConfig, "seed"), model.ops());
  shrink::QuantizedModel wrapped(model, q, sites);
  torch::jit::Module& module = model.module();
  wrapped.train(true);

  torch::manual_seed(0);
  at::Tensor x = torch::randn({32, 1, 28, 28});
  at::Tensor target = torch::randint(0, 10, {32});
  auto params = model_parameters(module);
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(0.01).momentum(0.9));
  float first_loss = 0;
  float last_loss = 0;
  for (int step = 0; step < 30; ++step) {
    sgd.zero_grad();
    at::Tensor loss = torch::nll_loss(wrapped.forward(x), target);
    loss.backward();
    if (step == 0) {
      for (const auto& p : params) {
        ASSERT_TRUE(p.grad().defined());
        EXPECT_GT(p.grad().abs().sum().item<float>(), 0.0f);
      }
      first_loss = loss.item<float>();
    }
    sgd.step();
    last_loss = loss.item<float>();
  }
  EXPECT_LT(last_loss, 0.5f * first_loss) << first_loss << " -> " << last_loss;

  // 8-bit fake quantization stays close to the float function of the same weights.
  wrapped.train(false);
  at::Tensor fq = wrapped.forward(x);
  torch::jit::Module plain = torch::jit::load(model_path("mnist"));
  std::map<std::string, at::Tensor> trained;
  for (const auto& p : module.named_parameters()) trained[p.name] = p.value;
  for (const auto& b : module.named_buffers()) trained[b.name] = b.value;
  for (const auto& p : plain.named_parameters())
    p.value.detach().copy_(trained.at(p.name).detach());
  for (const auto& b : plain.named_buffers()) b.value.detach().copy_(trained.at(b.name).detach());
  plain.eval();
  at::Tensor fp = plain.forward({x}).toTensor();
  EXPECT_GT((fq.argmax(1) == fp.argmax(1)).to(torch::kFloat).mean().item<float>(), 0.9f);
}

TEST(QuantizedModelTest, InstancesSharingAClassTypeHaveSeparateSites) {
  auto registry = registry_of({test_plugins("counting")});
  shrink::Model model = shrink::Model::load(model_path("resnet_small"));
  shrink::QuantizerInstance q(registry->require("counting"), {});
  auto sites = shrink::plan_sites(shrink::ConfigList::parse_text(R"(
- op_types: [Conv2d]
  target_names: [weight, _output_]
- op_types: [add]
)",
                                                                 "cfg"),
                                  model.ops());
  shrink::QuantizedModel wrapped(model, q, sites);
  ASSERT_EQ(sites.size(), 12u);  // 5 convs x 2 + 2 adds
  wrapped.train(false);
  wrapped.forward(torch::randn({2, 1, 28, 28}));
  wrapped.forward(torch::randn({2, 1, 28, 28}));
  for (std::size_t i = 0; i < sites.size(); ++i) {
    EXPECT_EQ(calls(q, wrapped.site_ids()[i]), 2.0f) << sites[i].op_name << "." << sites[i].target;
  }
  EXPECT_EQ(sites[2].op_name, "layer1.0.conv1");
  EXPECT_EQ(sites[6].op_name, "layer1.1.conv1");
  EXPECT_NE(q.site_state(wrapped.site_ids()[2])[0].value.data_ptr(),
            q.site_state(wrapped.site_ids()[6])[0].value.data_ptr());
}

TEST(QuantizedModelTest, TorchvisionResnet18IsFullyWrapped) {
  auto registry = registry_of({test_plugins("counting")});
  shrink::Model model = shrink::Model::load(model_path("resnet18"));
  shrink::QuantizerInstance q(registry->require("counting"), {});
  auto sites = shrink::plan_sites(shrink::ConfigList::parse_text(R"(
- op_types: [Conv2d, Linear]
  target_names: [_input_, weight]
- op_types: [ReLU, add]
  target_names: [_output_]
)",
                                                                 "cfg"),
                                  model.ops());
  shrink::QuantizedModel wrapped(model, q, sites);
  wrapped.train(false);
  at::Tensor y = wrapped.forward(torch::randn({1, 3, 32, 32}));
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{1, 10}));
  int relu_calls = 0;
  const auto& kept = wrapped.sites();
  for (std::size_t i = 0; i < kept.size(); ++i) {
    const float n = calls(q, wrapped.site_ids()[i]);
    if (kept[i].op_type == "ReLU") {
      relu_calls += static_cast<int>(n);  // a BasicBlock calls its one ReLU module twice
    } else {
      EXPECT_EQ(n, 1.0f) << kept[i].op_name << "." << kept[i].target;
    }
  }
  EXPECT_EQ(relu_calls, 1 + 8 * 2);
  // What a ReLU (or the max pool after the stem's) passes on is one tensor with the next
  // convolution's input; the downsample reads the block's input too.
  int merged = 0;
  for (const auto& p : wrapped.shared_points()) {
    EXPECT_EQ(p.conflict, "") << p.text();
    EXPECT_EQ(p.site.substr(p.site.size() - 9), "._input_0") << p.text();
    ++merged;
  }
  EXPECT_EQ(wrapped.sites().size() + merged, sites.size());
  EXPECT_GT(merged, 8);
}

TEST(QuantizedModelTest, HooksAndTrainingFlagReachThePlugin) {
  auto registry = registry_of({test_plugins("counting")});
  shrink::Model model = shrink::Model::load(model_path("mnist"));
  shrink::QuantizerInstance q(registry->require("counting"), {});
  auto sites = shrink::plan_sites(
      shrink::ConfigList::parse_text("- op_names: [fc2]\n  target_names: [weight]\n", "cfg"),
      model.ops());
  shrink::QuantizedModel wrapped(model, q, sites);
  const int site = wrapped.site_ids()[0];
  auto hooks = [&] { return q.site_state(site)[1].value; };
  wrapped.train(true);
  q.update_epoch(0);
  q.step();
  q.step();
  wrapped.forward(torch::randn({1, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(hooks(), torch::tensor({2.0f, 1.0f, 1.0f}))) << hooks();
  wrapped.train(false);
  wrapped.forward(torch::randn({1, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(hooks(), torch::tensor({2.0f, 1.0f, 0.0f}))) << hooks();
}

// A model that has already run (say, fp32 pretraining) compiled its forward; wrapping it must still
// change what runs, and keep the trained parameters.
TEST(QuantizedModelTest, WrapsAModelWhoseForwardHasAlreadyRun) {
  auto registry = registry_of({test_plugins("counting")});
  shrink::Model model = shrink::Model::load(model_path("mnist"));
  at::Tensor x = torch::randn({4, 1, 28, 28});
  // As the pipeline trains: the simple executor, which compiles the forward without inlining.
  torch::jit::setGraphExecutorOptimize(false);
  model.module().train(true);
  model.module().forward({x});
  model.module().eval();
  const at::Tensor before = model.module().forward({x}).toTensor();
  at::Tensor fc2_weight = model.module().attr("fc2").toModule().attr("weight").toTensor();

  shrink::QuantizerInstance q(registry->require("counting"), {});
  auto sites = shrink::plan_sites(shrink::ConfigList::parse_text(kSeedConfig, "seed"), model.ops());
  shrink::QuantizedModel wrapped(model, q, sites);
  wrapped.train(false);
  const at::Tensor after = wrapped.forward(x);
  for (int site : wrapped.site_ids())
    EXPECT_EQ(calls(q, site), 1.0f) << q.site_spec(site).module_name;
  EXPECT_TRUE(torch::allclose(before, after, 1e-5, 1e-6));
  EXPECT_TRUE(model.module().attr("fc2").toModule().attr("weight").toTensor().is_same(fc2_weight));
  torch::jit::setGraphExecutorOptimize(true);
}

// Simulated BatchNorm folding (fold_bn): with an identity quantizer the rewritten model computes
// what the original does, in training (batch statistics) and in evaluation, with and without a
// conv bias (mnist's conv1 has one, resnet_small's convolutions none), and with a channel whose
// gamma is 0 (pruned); once baked for export the
// BatchNorm is gone, the conv carries W * gamma / sqrt(var + eps), and the outputs stay the same.
TEST(QuantizedModelTest, FoldedBatchNormsComputeWhatTheOriginalDoes) {
  for (const std::string name : {"mnist", "resnet_small"}) {
    auto registry = registry_of({test_plugins("counting")});
    shrink::Model model = shrink::Model::load(model_path(name));
    torch::jit::Module original = torch::jit::load(model_path(name));
    {  // Statistics and affine parameters far from the identity, the same in both copies.
      torch::NoGradGuard no_grad;
      torch::manual_seed(7);
      for (auto* m : {&model.module(), &original}) {
        torch::manual_seed(7);
        for (const auto& sub : m->named_modules()) {
          if (!sub.value.type()->name() || sub.value.type()->name()->name() != "BatchNorm2d")
            continue;
          const int64_t c = sub.value.attr("running_mean").toTensor().size(0);
          sub.value.attr("running_mean").toTensor().copy_(torch::randn({c}) * 0.3);
          sub.value.attr("running_var").toTensor().copy_(torch::rand({c}) + 0.5);
          sub.value.attr("weight").toTensor().copy_(torch::randn({c}));
          sub.value.attr("bias").toTensor().copy_(torch::randn({c}) * 0.2);
          // Channel 0 as filter pruning leaves it: gamma 0 (sf 0, which a division made NaN).
          sub.value.attr("weight").toTensor()[0].zero_();
        }
      }
    }
    shrink::QuantizerInstance q(registry->require("counting"), {});
    const char* config = R"(
- op_types: [Conv2d]
  target_names: [_input_, weight, _output_]
)";
    auto sites = shrink::plan_sites(shrink::ConfigList::parse_text(config, "fold"), model.ops());
    shrink::QuantizedModel wrapped(model, q, sites, /*fold_bn=*/true);
    const auto folded = wrapped.folded_batchnorms();
    ASSERT_FALSE(folded.empty()) << name;
    if (name == "mnist") EXPECT_EQ(folded, std::vector<std::string>{"conv1 + batchnorm1"});

    torch::manual_seed(1);
    const at::Tensor x = torch::randn({8, 1, 28, 28});
    torch::NoGradGuard no_grad;
    // Training: batch statistics (the running ones move alike in both copies).
    wrapped.train(true);
    original.train(true);
    EXPECT_TRUE(torch::allclose(wrapped.forward(x), original.forward({x}).toTensor(), 1e-4, 1e-5))
        << name;
    wrapped.train(false);
    original.eval();
    const at::Tensor expected = original.forward({x}).toTensor();
    EXPECT_TRUE(torch::allclose(wrapped.forward(x), expected, 1e-4, 1e-5)) << name;

    wrapped.bake_folded_batchnorms();
    const std::string graph = model.module().get_method("forward").graph()->toString();
    EXPECT_EQ(graph.find("aten::batch_norm"), std::string::npos) << name;
    // A method that has run keeps its plan: the baked graph runs once saved and loaded (export).
    const std::string file =
        (std::filesystem::temp_directory_path() / ("shrink_fold_" + name + ".pt")).string();
    model.module().save(file);
    torch::jit::Module baked = torch::jit::load(file);
    baked.eval();
    std::filesystem::remove(file);
    EXPECT_TRUE(torch::allclose(baked.forward({x}).toTensor(), expected, 1e-4, 1e-5)) << name;
    if (name == "mnist") {
      const at::Tensor gamma = original.attr("batchnorm1").toModule().attr("weight").toTensor();
      const at::Tensor var = original.attr("batchnorm1").toModule().attr("running_var").toTensor();
      const at::Tensor w0 = original.attr("conv1").toModule().attr("weight").toTensor();
      const at::Tensor w = model.module().attr("conv1").toModule().attr("weight").toTensor();
      EXPECT_TRUE(torch::allclose(w, w0 * (gamma / (var + 1e-5).sqrt()).reshape({-1, 1, 1, 1}),
                                  1e-5, 1e-7));
    }
  }
}
