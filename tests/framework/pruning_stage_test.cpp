// The host's pruning stage on the quick-start net: masks held through training (weights and
// gradients, with momentum and weight decay), global ranking with a per-layer cap, BatchNorms
// following their convolution, and the config_list's pruning keys and errors.
#include "plugin_fixtures.hpp"

#include <shrink/config/config_list.hpp>
#include <shrink/core/error.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/prune/pruning_stage.hpp>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

namespace {

std::string mnist() { return std::string(shrink::test::kTestModelDir) + "/mnist.pt"; }

class PruningStageTest : public ::testing::Test {
 protected:
  PruningStageTest()
      : registry_(shrink::test::registry_of({shrink::test::kPluginDir})),
        model_(shrink::Model::load(mnist())) {}

  std::vector<shrink::PruneTarget> plan(const std::string& yaml) {
    return shrink::plan_pruning(shrink::ConfigList::parse_text(yaml, "exp.yaml"), model_.ops());
  }
  std::unique_ptr<shrink::PruningStage> stage(const std::string& plugin, const std::string& yaml) {
    return std::make_unique<shrink::PruningStage>(registry_->require(plugin), shrink::Options{},
                                                  plan(yaml), model_.module(), "compress[0]");
  }
  static double sparsity(const at::Tensor& t) {
    return t.eq(0).sum().item<double>() / static_cast<double>(t.numel());
  }
  at::Tensor param(const std::string& module, const std::string& name) {
    return model_.module().attr(module).toModule().attr(name).toTensor();
  }

  std::unique_ptr<shrink::PluginRegistry> registry_;
  shrink::Model model_;
};

TEST_F(PruningStageTest, MasksHoldThroughTraining) {
  auto s = stage("l1_norm", "- op_names: [conv1, conv2, fc1]\n  sparse_ratio: 0.5\n");
  s->update(shrink::Schedule::kOneShot, 1, 1);
  for (const auto& op : s->ops()) EXPECT_DOUBLE_EQ(sparsity(op.weight), 0.5) << op.target.op_name;
  std::vector<at::Tensor> params;
  for (const auto& p : model_.module().parameters()) params.push_back(p);
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(1e-3));
  model_.module().train();
  torch::manual_seed(0);
  for (int step = 0; step < 5; ++step) {
    sgd.zero_grad();
    at::Tensor loss =
        torch::nll_loss(model_.module().forward({torch::randn({16, 1, 28, 28})}).toTensor(),
                        torch::randint(10, {16}));
    loss.backward();
    s->mask_gradients();
    for (const auto& op : s->ops()) {
      EXPECT_EQ(op.weight.grad().masked_select(op.weight_mask == 0).abs().sum().item<double>(),
                0.0);
    }
    sgd.step();
    s->apply_masks();
  }
  for (const auto& op : s->ops()) {
    EXPECT_DOUBLE_EQ(sparsity(op.weight), 0.5) << op.target.op_name;
    EXPECT_TRUE(torch::equal(op.weight.ne(0), op.weight_mask.ne(0))) << op.target.op_name;
  }
  // batchnorm1 follows conv1: the pruned filters' channels are zero after it.
  ASSERT_EQ(s->followers().size(), 1u);
  EXPECT_EQ(s->followers()[0].op_name, "batchnorm1");
  const at::Tensor gone = s->ops()[0].weight_mask.reshape({20, -1}).eq(0).all(1);
  EXPECT_EQ(gone.sum().item<int64_t>(), 10);
  EXPECT_EQ(param("batchnorm1", "weight").masked_select(gone).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(param("batchnorm1", "bias").masked_select(gone).abs().sum().item<double>(), 0.0);
  EXPECT_GT(
      param("batchnorm1", "weight").masked_select(gone.logical_not()).abs().min().item<double>(),
      0.0);
}

TEST_F(PruningStageTest, TaylorRanksFiltersByOutputTimesGradient) {
  // taylor (criterion: activation) gets, per sample and output channel, the sum over positions
  // of output * dLoss/doutput, which shrink::tap records while the stage trains. For fc1 that
  // equals sum(w * dL/dw) + b * dL/db (the output is w . x + b). conv1 is followed by
  // batchnorm1, whose output is tapped instead (the feature map a pruned filter removes):
  // y = gamma (a - mean) / sd + beta adds (beta - gamma mean / sd) * dL/dbeta to conv1's own sum.
  // With one sample the scores are |that|, l2-normalised.
  {
    torch::NoGradGuard no_grad;  // BatchNorm statistics far from the identity
    torch::manual_seed(1);
    param("batchnorm1", "running_mean").copy_(torch::randn({20}));
    param("batchnorm1", "running_var").copy_(torch::rand({20}) + 0.2);
    param("batchnorm1", "weight").copy_(torch::randn({20}));
    param("batchnorm1", "bias").copy_(torch::randn({20}));
  }
  auto s = stage("taylor", "- op_names: [conv1, fc1]\n  sparse_ratio: 0.5\n");
  ASSERT_TRUE(s->observes_outputs());
  auto taps = [&] {
    int n = 0;
    for (const torch::jit::Node* node : model_.module().get_method("forward").graph()->nodes()) {
      n += node->kind() == c10::Symbol::fromQualString("shrink::tap");
    }
    return n;
  };
  model_.module().eval();
  torch::manual_seed(0);
  const at::Tensor x = torch::randn({1, 1, 28, 28});
  const at::Tensor before = model_.module().forward({x}).toTensor().detach();
  s->tap_outputs(model_.module());
  EXPECT_EQ(taps(), 2);
  const at::Tensor out = model_.module().forward({x}).toTensor();
  EXPECT_TRUE(torch::equal(out.detach(), before));
  torch::nll_loss(out, torch::tensor({3}, torch::kLong)).backward();
  s->observe();
  for (std::size_t i = 0; i < 2; ++i) {
    const shrink::MaskedOp& op = s->ops()[i];
    at::Tensor expected = (op.weight * op.weight.grad()).reshape({op.weight.size(0), -1}).sum(1) +
                          op.bias * op.bias.grad();
    if (i == 0) {
      const at::Tensor gamma = param("batchnorm1", "weight"), beta = param("batchnorm1", "bias");
      const at::Tensor sd = (param("batchnorm1", "running_var") + 1e-5).sqrt();
      expected = expected + (beta - gamma * param("batchnorm1", "running_mean") / sd) * beta.grad();
    }
    expected = expected.abs().to(at::kDouble);
    expected = expected / expected.norm();
    const at::Tensor got = s->importance(i).to(at::kDouble);
    EXPECT_TRUE(torch::allclose(got, expected, 1e-3, 1e-5))
        << op.target.op_name << ": max difference " << (got - expected).abs().max().item<double>();
  }
  // The mask keeps the higher scores; the taps come out again and the outputs are as before.
  s->update(shrink::Schedule::kOneShot, 1, 1);
  EXPECT_DOUBLE_EQ(sparsity(s->ops()[0].weight), 0.5);
  s->untap_outputs(model_.module());
  EXPECT_EQ(taps(), 0);
  s->apply_masks();
  at::Tensor masked = model_.module().forward({x}).toTensor();
  EXPECT_EQ(masked.sizes(), before.sizes());
}

TEST_F(PruningStageTest, ScheduleRaisesSparsityStepByStep) {
  auto s = stage("level", "- op_names: [fc1]\n  sparsity: 0.8\n");
  double last = 0;
  for (int u = 1; u <= 4; ++u) {
    s->update(shrink::Schedule::kAgp, u, 4);
    const double now = sparsity(s->ops()[0].weight);
    EXPECT_NEAR(now, shrink::scheduled_sparsity(shrink::Schedule::kAgp, 0.8, u, 4), 1e-5);
    EXPECT_GT(now, last);
    last = now;
  }
}

TEST_F(PruningStageTest, GlobalRankingAcrossLayersWithACap) {
  // total_sparsity ranks conv2's and fc1's filters together: the pruned weights stay within half
  // of all their weights, the layers end up with different sparsities.
  auto s = stage("l2_norm", "- op_names: [conv2, fc1]\n  total_sparsity: 0.5\n");
  s->update(shrink::Schedule::kOneShot, 1, 1);
  const at::Tensor w2 = s->ops()[0].weight, w1 = s->ops()[1].weight;
  const double pruned = w2.eq(0).sum().item<double>() + w1.eq(0).sum().item<double>();
  const double total = static_cast<double>(w2.numel() + w1.numel());
  EXPECT_LE(pruned / total, 0.5);
  EXPECT_GT(pruned / total, 0.5 - 800.0 / total);  // within one fc1 row
  EXPECT_NE(sparsity(w2), sparsity(w1));
  // With a cap of 0.3 per layer, neither goes past it.
  model_ = shrink::Model::load(mnist());
  auto capped =
      stage("l2_norm",
            "- op_names: [conv2, fc1]\n  total_sparsity: 0.5\n  max_sparsity_per_layer: 0.3\n");
  capped->update(shrink::Schedule::kOneShot, 1, 1);
  for (const auto& op : capped->ops())
    EXPECT_LE(sparsity(op.weight), 0.3 + 1e-9) << op.target.op_name;
}

TEST_F(PruningStageTest, OpTypeThePluginCannotHandleIsNamed) {
  try {
    stage("slim", "- op_names: [conv1]\n  sparse_ratio: 0.5\n");
    FAIL() << "slim on a Conv2d must be refused";
  } catch (const shrink::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cannot prune op 'conv1' of type Conv2d (it handles BatchNorm2d)"),
              std::string::npos)
        << what;
  }
  auto s = stage("slim", "- op_types: [BatchNorm2d]\n  sparse_ratio: 0.25\n");
  s->update(shrink::Schedule::kOneShot, 1, 1);
  EXPECT_EQ(param("batchnorm1", "weight").eq(0).sum().item<int64_t>(), 5);
}

TEST_F(PruningStageTest, ConfigListErrorsNameTheKey) {
  auto fails_with = [&](const std::string& yaml, const std::string& expected) {
    try {
      plan(yaml);
      ADD_FAILURE() << "accepted: " << yaml;
    } catch (const shrink::Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  };
  fails_with("- op_types: [Conv2d]\n  sparse_ratio: 1.5\n",
             "sparse_ratio is 1.5, expected a value in [0, 1)");
  fails_with("- op_types: [Conv2d]\n  sparsity: '0.2x'\n",
             "sparsity is '0.2x', expected a number in [0, 1)");
  fails_with("- op_types: [Conv2d]\n  sparse_ratio: 0.5\n  quant_bits: 8\n",
             "quant_bits is not a pruning key");
  fails_with("- op_types: [Conv2d]\n  sparse_ratio: 0.5\n  total_sparsity: 0.5\n",
             "give exactly one of sparse_ratio");
  fails_with("- op_names: [relu1]\n  sparse_ratio: 0.5\n",
             "op 'relu1' (ReLU6) has no weight to prune");
  fails_with("- op_names: [conv9]\n  sparse_ratio: 0.5\n", "the model has no op 'conv9'");
  // exclude, exclude_op_names, NNI's aliases.
  const auto t = plan(
      "- op_types: [Conv2d, Linear]\n  sparsity_per_layer: 0.3\n  exclude_op_names: [fc2]\n"
      "- op_names: [conv2]\n  exclude: true\n");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].op_name, "conv1");
  EXPECT_EQ(t[1].op_name, "fc1");
  EXPECT_DOUBLE_EQ(t[1].sparsity, 0.3);
}

}  // namespace
