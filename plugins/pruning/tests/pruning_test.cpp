// The pruning plugins, loaded from the built plugin folder, on NNI's reference cases (its unit
// tests' weights and expected masks), plus what NNI's cases leave open: exact counts, bias masks,
// importance scores for the host's global ranking, option errors.
#include "plugin_fixtures.hpp"

#include <shrink/core/error.hpp>
#include <shrink/host/masker_instance.hpp>
#include <shrink/prune/pruning_stage.hpp>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

namespace {

class PruningPluginTest : public ::testing::Test {
 protected:
  PruningPluginTest() : registry_(shrink::test::registry_of({shrink::test::kPluginDir})) {}

  std::unique_ptr<shrink::MaskerInstance> make(const std::string& name,
                                               const shrink::Options& o = {}) {
    return std::make_unique<shrink::MaskerInstance>(registry_->require(name), o);
  }
  static shrink::WrapperSpec conv(const std::string& name, at::Tensor w, at::Tensor b = {}) {
    return shrink::WrapperSpec{name, "Conv2d", {}, std::move(w), std::move(b)};
  }
  // Filters weighing `value(i)` each: ones(shape) * value(i).
  template <typename F>
  static at::Tensor filters(int64_t n, std::vector<int64_t> shape, F value) {
    std::vector<at::Tensor> f;
    for (int64_t i = 0; i < n; ++i) f.push_back(torch::ones(shape) * value(i));
    return torch::stack(f);
  }
  static std::vector<double> sums(const at::Tensor& mask) {
    at::Tensor s = mask.reshape({mask.size(0), -1}).sum(1).to(at::kDouble).contiguous();
    return std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
  }

  std::unique_ptr<shrink::PluginRegistry> registry_;
};

using V = std::vector<double>;

TEST_F(PruningPluginTest, FpgmPrunesTheGeometricMedianFilters) {
  // NNI test_torch_fpgm_pruner: w[i] = ones(5,5,5) * (i+1).
  auto m = make("fpgm");
  const auto w = filters(10, {5, 5, 5}, [](int64_t i) { return static_cast<double>(i + 1); });
  EXPECT_EQ(sums(m->calc_mask(0.2, conv("conv2", w), 0).weight_mask),
            (V{125, 125, 125, 125, 0, 0, 125, 125, 125, 125}));
  EXPECT_EQ(sums(m->calc_mask(0.6, conv("conv2", w), 0).weight_mask),
            (V{125, 125, 0, 0, 0, 0, 0, 0, 125, 125}));
}

TEST_F(PruningPluginTest, L1FilterMasksAndBias) {
  // NNI test_torch_l1filter_pruner: w1[i] = ones(1,5,5) * i at 0.2; w2[i] = ones(5,5,5) * i at 0.6.
  auto m = make("l1_norm");
  const auto w1 = filters(5, {1, 5, 5}, [](int64_t i) { return static_cast<double>(i); });
  const auto w2 = filters(10, {5, 5, 5}, [](int64_t i) { return static_cast<double>(i); });
  shrink::Masks m1 = m->calc_mask(0.2, conv("conv1", w1, torch::ones({5})), 0);
  EXPECT_EQ(sums(m1.weight_mask), (V{0, 25, 25, 25, 25}));
  ASSERT_TRUE(m1.bias_mask.defined());
  EXPECT_TRUE(torch::equal(m1.bias_mask, torch::tensor({0.f, 1.f, 1.f, 1.f, 1.f})));
  EXPECT_EQ(sums(m->calc_mask(0.6, conv("conv2", w2), 1).weight_mask),
            (V{0, 0, 0, 0, 0, 0, 125, 125, 125, 125}));
  // The scores the host ranks globally: one per filter.
  EXPECT_TRUE(torch::allclose(m->importance(conv("conv1", w1), 0),
                              torch::tensor({0.f, 25.f, 50.f, 75.f, 100.f})));
}

TEST_F(PruningPluginTest, L2RanksByEuclideanNorm) {
  // Filter 0 has the larger L1 norm (4 x 1) but the smaller L2 norm (2 < 3) than filter 1 (one 3).
  at::Tensor w = torch::zeros({3, 1, 2, 2});
  w[0].fill_(1.0);
  w[1][0][0][0] = 3.0;
  w[2].fill_(5.0);
  EXPECT_EQ(sums(make("l2_norm")->calc_mask(0.34, conv("c", w), 0).weight_mask), (V{0, 4, 4}));
  EXPECT_EQ(sums(make("l1_norm")->calc_mask(0.34, conv("c", w), 0).weight_mask), (V{4, 0, 4}));
}

TEST_F(PruningPluginTest, FilterMaskersNeverPruneAWholeLayerOrALoneFilter) {
  auto m = make("l1_norm");
  const auto w = filters(4, {2, 3, 3}, [](int64_t i) { return static_cast<double>(i + 1); });
  EXPECT_EQ(sums(m->calc_mask(0.99, conv("c", w), 0).weight_mask), (V{0, 0, 0, 18}));
  EXPECT_EQ(sums(m->calc_mask(0.9, conv("c", torch::ones({1, 2, 3, 3})), 1).weight_mask), (V{18}));
  EXPECT_EQ(sums(m->calc_mask(0.0, conv("c", w), 2).weight_mask), (V{18, 18, 18, 18}));
}

TEST_F(PruningPluginTest, LevelHitsTheSparsityExactly) {
  // NNI's level case: 0.8 lands between 0.78 and 0.82; here exactly floor(n * 0.8) go, the
  // smallest magnitudes.
  torch::manual_seed(0);
  const at::Tensor w = torch::randn({20, 10, 5, 5});
  auto m = make("level");
  const at::Tensor mask = m->calc_mask(0.8, conv("conv1", w), 0).weight_mask;
  const double sparsity = 1.0 - mask.sum().item<double>() / static_cast<double>(w.numel());
  EXPECT_GT(sparsity, 0.78);
  EXPECT_LT(sparsity, 0.82);
  EXPECT_EQ(mask.numel() - mask.sum().item<int64_t>(), static_cast<int64_t>(0.8 * w.numel()));
  // Every kept weight is at least as large as every pruned one.
  const at::Tensor a = w.abs();
  EXPECT_GE(a.masked_select(mask > 0).min().item<float>(),
            a.masked_select(mask == 0).max().item<float>());
  EXPECT_EQ(m->importance(conv("conv1", w), 0).sizes(), w.sizes());
}

TEST_F(PruningPluginTest, SlimGlobalThresholdOverBatchNorms) {
  // NNI's Slim case: bn1.weight = [0..4], bn2.weight = -[0..4], global threshold at 0.2 keeps
  // [0,1,1,1,1] in both (weight and bias masks); both [0..4] at 0.6 keep [0,0,0,1,1].
  auto m = make("slim");
  auto bn = [](at::Tensor g) {
    return shrink::WrapperSpec{"bn", "BatchNorm2d", {}, g, torch::ones({5})};
  };
  auto global = [&](const std::vector<at::Tensor>& gammas, double sparsity) {
    std::vector<shrink::RankedLayer> layers;
    for (std::size_t i = 0; i < gammas.size(); ++i) {
      layers.push_back({m->importance(bn(gammas[i]), static_cast<int>(i)), 1, 4});
    }
    return shrink::allocate_global(layers, sparsity);
  };
  const at::Tensor up = torch::arange(5).to(at::kFloat);
  EXPECT_EQ(global({up, -up}, 0.2), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(global({up, up}, 0.6), (std::vector<int64_t>{3, 3}));
  shrink::Masks k = m->calc_mask(1.5 / 5, bn(-up), 1);  // what the host asks for 1 of 5
  EXPECT_TRUE(torch::equal(k.weight_mask, torch::tensor({0.f, 1.f, 1.f, 1.f, 1.f})));
  EXPECT_TRUE(torch::equal(k.bias_mask, torch::tensor({0.f, 1.f, 1.f, 1.f, 1.f})));
  EXPECT_TRUE(torch::equal(m->calc_mask(3.5 / 5, bn(up), 0).weight_mask,
                           torch::tensor({0.f, 0.f, 0.f, 1.f, 1.f})));
  EXPECT_DOUBLE_EQ(m->l1_penalty(), 1e-4);  // NNI's default scale
  shrink::Options o;
  o.set("scale", "0.01");
  EXPECT_DOUBLE_EQ(make("slim", o)->l1_penalty(), 0.01);
  o.set("scale", "-1");
  EXPECT_THROW(make("slim", o), shrink::Error);
}

TEST_F(PruningPluginTest, TaylorAccumulatesWeightTimesGradient) {
  // NNI's TaylorFO case: w1 = [0..4] per filter (ones(1,5,5) * v), gradients [-1,1,-1,1,-1];
  // w2 filter i = 10 - i, gradient (-1)^i. Per layer: conv1 at 0.2 -> [0,25,25,25,25], conv2 at
  // 0.6 -> [125]*4 + [0]*6. Global at 0.4 -> conv1 [0,0,0,0,25], conv2 [125]*7 + [0]*3.
  const auto w1 = filters(5, {1, 5, 5}, [](int64_t i) { return static_cast<double>(i); });
  const auto g1 = filters(5, {1, 5, 5}, [](int64_t i) { return i % 2 ? 1.0 : -1.0; });
  const auto w2 = filters(10, {5, 5, 5}, [](int64_t i) { return static_cast<double>(10 - i); });
  const auto g2 = filters(10, {5, 5, 5}, [](int64_t i) { return i % 2 ? -1.0 : 1.0; });
  shrink::Options weight;
  weight.set("criterion", "weight");
  auto observed = [&] {
    auto m = make("taylor", weight);
    EXPECT_FALSE(m->observes_outputs());
    EXPECT_TRUE(m->ranks_in_training());
    shrink::WrapperSpec a = conv("conv1", w1), b = conv("conv2", w2);
    a.weight_grad = g1;
    b.weight_grad = g2;
    m->observe(a, 0);
    m->observe(b, 1);
    return m;
  };
  auto m = observed();
  EXPECT_EQ(sums(m->calc_mask(0.2, conv("conv1", w1), 0).weight_mask), (V{0, 25, 25, 25, 25}));
  EXPECT_EQ(sums(m->calc_mask(0.6, conv("conv2", w2), 1).weight_mask),
            (V{125, 125, 125, 125, 0, 0, 0, 0, 0, 0}));
  // Statistics start again after a mask: nothing observed since, so it says so.
  EXPECT_THROW(m->calc_mask(0.2, conv("conv1", w1), 0), shrink::Error);

  m = observed();
  std::vector<shrink::RankedLayer> layers = {{m->importance(conv("conv1", w1), 0), 25, 4},
                                             {m->importance(conv("conv2", w2), 1), 125, 9}};
  const auto pruned = shrink::allocate_global(layers, 0.4);
  ASSERT_EQ(pruned, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(sums(m->calc_mask((4 + 0.5) / 5, conv("conv1", w1), 0).weight_mask),
            (V{0, 0, 0, 0, 25}));
  EXPECT_EQ(sums(m->calc_mask((3 + 0.5) / 10, conv("conv2", w2), 1).weight_mask),
            (V{125, 125, 125, 125, 125, 125, 125, 0, 0, 0}));
  // Observed twice, the scores double (accumulated over steps).
  auto twice = observed();
  shrink::WrapperSpec a = conv("conv1", w1);
  a.weight_grad = g1;
  twice->observe(a, 0);
  EXPECT_TRUE(torch::allclose(twice->importance(conv("conv1", w1), 0),
                              2 * observed()->importance(conv("conv1", w1), 0)));
}

TEST_F(PruningPluginTest, TaylorRanksOutputsTimesGradients) {
  // criterion: activation (the default): per channel, the mean over samples of |sum over
  // positions of output * dL/doutput| (the host gives those sums per sample, [N, C]), summed over
  // steps, l2-normalised per layer. Per-sample magnitudes first: summed before the abs, channel 0's
  // two samples (1 and -3) would cancel to 2 instead of adding to 4.
  auto m = make("taylor");
  EXPECT_TRUE(m->observes_outputs());
  EXPECT_TRUE(m->ranks_in_training());
  shrink::WrapperSpec c = conv("conv1", torch::ones({3, 1, 2, 2}));
  c.output_grad_product = torch::tensor({{1.0, -2.0, 0.5}, {-3.0, 0.0, 0.5}});
  m->observe(c, 0);
  const at::Tensor scores =
      m->importance(conv("conv1", torch::ones({3, 1, 2, 2})), 0).to(at::kDouble);
  const at::Tensor expected =
      torch::tensor({2.0, 1.0, 0.5}, at::kDouble) / std::sqrt(4.0 + 1.0 + 0.25);
  EXPECT_TRUE(torch::allclose(scores, expected)) << scores;
  m->observe(c, 0);  // a second step: doubled, and normalised alike
  EXPECT_TRUE(torch::allclose(
      m->importance(conv("conv1", torch::ones({3, 1, 2, 2})), 0).to(at::kDouble), expected));
  EXPECT_EQ(sums(m->calc_mask(0.4, conv("conv1", torch::ones({3, 1, 2, 2})), 0).weight_mask),
            (V{4, 4, 0}));
  // A step without the product (the op did not run) adds nothing; a product of the wrong shape is
  // named; so is an unknown criterion.
  shrink::WrapperSpec none = conv("conv1", torch::ones({3, 1, 2, 2}));
  none.weight_grad = torch::ones({3, 1, 2, 2});
  m->observe(none, 0);
  EXPECT_THROW(m->importance(none, 0), shrink::Error);
  c.output_grad_product = torch::ones({2, 4});
  try {
    m->observe(c, 0);
    FAIL() << "a product of the wrong shape must be rejected";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected [samples, 3]"), std::string::npos) << e.what();
  }
  shrink::Options o;
  o.set("criterion", "gradient");
  EXPECT_THROW(make("taylor", o), shrink::Error);
}

TEST_F(PruningPluginTest, UnknownOptionIsRejected) {
  shrink::Options o;
  o.set("sparsity", "0.5");
  try {
    make("l1_norm", o);
    FAIL() << "an unknown option must be rejected";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("sparsity"), std::string::npos) << e.what();
  }
}

TEST(PruningSchedule, OneShotLinearAgp) {
  using shrink::Schedule;
  EXPECT_DOUBLE_EQ(shrink::scheduled_sparsity(Schedule::kOneShot, 0.5, 1, 1), 0.5);
  EXPECT_DOUBLE_EQ(shrink::scheduled_sparsity(Schedule::kLinear, 0.5, 1, 4), 0.125);
  EXPECT_DOUBLE_EQ(shrink::scheduled_sparsity(Schedule::kLinear, 0.5, 4, 4), 0.5);
  // AGP: s (1 - (1 - t)^3): fast first, slow last; reaches s.
  EXPECT_DOUBLE_EQ(shrink::scheduled_sparsity(Schedule::kAgp, 0.8, 1, 2), 0.8 * (1 - 0.125));
  EXPECT_DOUBLE_EQ(shrink::scheduled_sparsity(Schedule::kAgp, 0.8, 2, 2), 0.8);
  double last = 0, last_step = 1;
  for (int u = 1; u <= 10; ++u) {
    const double s = shrink::scheduled_sparsity(Schedule::kAgp, 0.5, u, 10);
    EXPECT_GT(s, last);
    EXPECT_LT(s - last, last_step + 1e-12);  // steps shrink
    last_step = s - last;
    last = s;
  }
  EXPECT_THROW(shrink::schedule_from_name("cubic", "x.yaml:3:5"), shrink::Error);
}

}  // namespace
