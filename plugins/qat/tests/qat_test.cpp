// NNI's QAT unit-test cases (test_compressor_torch.py, v2.10), run through the built qat plugin.
#include "plugin_fixtures.hpp"

#include "../fake_quant.hpp"

#include <shrink/core/error.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace {

class QatTest : public ::testing::Test {
 protected:
  QatTest()
      : registry_(shrink::test::registry_of({shrink::test::kPluginDir})),
        q_(std::make_unique<shrink::QuantizerInstance>(registry_->require("qat"),
                                                       shrink::Options{})) {
    q_->set_training(true);
  }

  // NNI 2.x defaults: uint8, per_tensor_affine.
  int site(const std::string& target, shrink::QuantType type, const std::string& dtype = "uint8",
           const std::string& scheme = "affine", const std::string& granularity = "default",
           const at::Tensor& sample = {}) {
    shrink::SiteSpec spec;
    spec.module_name = "conv2";
    spec.module_type = "Conv2d";
    spec.target = target;
    spec.quant_type = type;
    spec.config.set("quant_dtype", dtype);
    spec.config.set("quant_bits", dtype.substr(dtype.find("int") + 3));
    spec.config.set("quant_scheme", scheme);
    spec.config.set("granularity", granularity);
    spec.sample = sample;
    return q_->add_site(spec);
  }
  at::Tensor state(int site, const std::string& name) {
    for (const auto& s : q_->site_state(site)) {
      if (s.name == name) return s.value;
    }
    ADD_FAILURE() << "no state " << name;
    return {};
  }

  std::unique_ptr<shrink::PluginRegistry> registry_;
  std::unique_ptr<shrink::QuantizerInstance> q_;
};

}  // namespace

TEST_F(QatTest, WeightRangeIsExtendedToZero) {
  int s = site("weight", shrink::QuantType::kWeight);
  q_->quantize(s, torch::tensor({{1.0f, 2.0f}, {3.0f, 5.0f}}));
  EXPECT_NEAR(state(s, "scale").item<float>(), 5.0f / 255, 1e-7);
  EXPECT_EQ(state(s, "zero_point").item<float>(), 0.0f);
}

TEST_F(QatTest, InputScaleOnTheFirstStep) {
  int s = site("_input_0", shrink::QuantType::kInput);
  q_->quantize(s, torch::tensor({{1.0f, 4.0f}, {2.0f, 1.0f}}));
  EXPECT_NEAR(state(s, "scale").item<float>(), 4.0f / 255, 1e-7);
  EXPECT_EQ(state(s, "zero_point").item<float>(), 0.0f);
}

TEST_F(QatTest, ZeroPointWithANegativeMinimum) {
  int s = site("weight", shrink::QuantType::kWeight);
  q_->quantize(s, torch::tensor({{-1.0f, 2.0f}, {3.0f, 5.0f}}));
  EXPECT_NEAR(state(s, "scale").item<float>(), 6.0f / 255, 1e-7);
  const float zp = state(s, "zero_point").item<float>();
  EXPECT_TRUE(zp == 42.0f || zp == 43.0f) << zp;  // 42.5 rounded
}

TEST_F(QatTest, FakeQuantizedValues) {
  int s = site("weight", shrink::QuantType::kWeight);
  at::Tensor y = q_->quantize(s, torch::tensor({{1.1287f, 2.3456f}, {3.7814f, 5.9723f}}));
  at::Tensor expected = torch::tensor({{1.1242f, 2.3421f}, {3.7707f, 5.9723f}});
  EXPECT_TRUE(torch::allclose(y, expected, 1e-4, 0)) << y;
}

TEST_F(QatTest, OutputRangeIsAnEmaWithDecay099) {
  int s = site("_output_0", shrink::QuantType::kOutput);
  q_->quantize(s, torch::relu(torch::tensor({{-0.2f, 0.0f}, {0.1f, 0.2f}})));
  EXPECT_FLOAT_EQ(state(s, "tracked_min").item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(state(s, "tracked_max").item<float>(), 0.2f);
  q_->step();
  q_->quantize(s, torch::relu(torch::tensor({{0.2f, 0.4f}, {0.6f, 0.8f}})));
  EXPECT_NEAR(state(s, "tracked_min").item<float>(), 0.002f, 1e-7);
  EXPECT_NEAR(state(s, "tracked_max").item<float>(), 0.2060f, 1e-6);
}

TEST_F(QatTest, DtypeSchemeTableOnWeights) {
  const at::Tensor w = torch::arange(1, 19, torch::kFloat).view({2, 1, 3, 3});
  struct Row {
    std::string dtype, scheme, granularity;
    std::vector<float> scale;
    float zero_point;
  };
  const std::vector<Row> rows = {
      {"int8", "symmetric", "per_channel", {9 / 127.f, 18 / 127.f}, 0},
      {"uint8", "symmetric", "per_channel", {9 / 127.5f, 18 / 127.5f}, 127},
      {"int8", "symmetric", "default", {18 / 127.f}, 0},
      {"uint8", "symmetric", "default", {18 / 127.5f}, 127},
      {"int8", "affine", "per_channel", {9 / 254.f, 18 / 254.f}, -127},
      {"uint8", "affine", "per_channel", {9 / 255.f, 18 / 255.f}, 0},
      {"int8", "affine", "default", {18 / 254.f}, -127},
      {"uint8", "affine", "default", {18 / 255.f}, 0},
  };
  for (const auto& row : rows) {
    int s = site("weight", shrink::QuantType::kWeight, row.dtype, row.scheme, row.granularity, w);
    q_->quantize(s, w);
    at::Tensor scale = state(s, "scale").reshape({-1});
    ASSERT_EQ(scale.numel(), static_cast<int64_t>(row.scale.size()))
        << row.dtype << " " << row.scheme;
    for (std::size_t i = 0; i < row.scale.size(); ++i) {
      EXPECT_NEAR(scale[i].item<float>(), row.scale[i], 1e-7)
          << row.dtype << " " << row.scheme << " " << row.granularity;
    }
    EXPECT_TRUE((state(s, "zero_point") == row.zero_point).all().item<bool>())
        << row.dtype << " " << row.scheme << " " << state(s, "zero_point");
  }
}

TEST_F(QatTest, DtypeSchemeTableOnInputs) {
  const at::Tensor x = torch::arange(0, 16, torch::kFloat).view({1, 1, 4, 4});
  const std::vector<std::tuple<std::string, std::string, float, float>> rows = {
      {"int8", "symmetric", 15 / 127.f, 0},
      {"uint8", "symmetric", 15 / 127.5f, 127},
      {"int8", "affine", 15 / 254.f, -127},
      {"uint8", "affine", 15 / 255.f, 0}};
  for (const auto& [dtype, scheme, scale, zp] : rows) {
    int s = site("_input_0", shrink::QuantType::kInput, dtype, scheme);
    q_->quantize(s, x);
    EXPECT_NEAR(state(s, "scale").item<float>(), scale, 1e-7) << dtype << " " << scheme;
    EXPECT_EQ(state(s, "zero_point").item<float>(), zp) << dtype << " " << scheme;
  }
}

TEST_F(QatTest, MatchesANaiveReferenceForEveryBitWidth) {
  torch::manual_seed(3);
  const at::Tensor w = torch::randn({4, 3, 3, 3});
  for (int bits = 2; bits <= 8; ++bits) {
    for (const std::string scheme : {"affine", "symmetric"}) {
      int s = site("weight", shrink::QuantType::kWeight, "int" + std::to_string(bits), scheme);
      at::Tensor y = q_->quantize(s, w);
      // Reference: NNI's formulas, written out.
      const double qmax = std::pow(2.0, bits - 1) - 1, qmin = -qmax;
      const double rmin = std::min(0.0, w.min().item<double>());
      const double rmax = std::max(0.0, w.max().item<double>());
      double scale, zp;
      if (scheme == "symmetric") {
        scale = std::max(std::abs(rmin), std::abs(rmax)) / ((qmax - qmin) / 2);
        zp = 0;
      } else {
        scale = (rmax - rmin) / (qmax - qmin);
        zp = std::min(qmax, std::max(qmin, qmin - std::nearbyint(rmin / scale)));
      }
      at::Tensor ref = (torch::clamp(torch::round(w / scale + zp), qmin, qmax) - zp) * scale;
      EXPECT_TRUE(torch::allclose(y, ref, 1e-5, 1e-6)) << bits << " bits " << scheme;
      EXPECT_LE(std::get<0>(at::_unique(y)).numel(), static_cast<int64_t>(qmax - qmin + 1));
    }
  }
}

TEST_F(QatTest, GradientIsZeroOutsideTheRepresentableRange) {
  int s = site("_output_0", shrink::QuantType::kOutput, "int8", "affine");
  q_->quantize(s, torch::tensor({0.0f, 1.0f}));  // tracked range [0, 1]
  at::Tensor x = torch::tensor({-0.5f, 0.25f, 0.5f, 1.5f}).requires_grad_(true);
  q_->quantize(s, x).sum().backward();
  // The EMA moved the range to about [-0.005, 1.005]: -0.5 and 1.5 are outside.
  EXPECT_TRUE(torch::equal(x.grad(), torch::tensor({0.0f, 1.0f, 1.0f, 0.0f}))) << x.grad();
}

TEST_F(QatTest, NoQuantizationOfActivationsBeforeQuantStartStep) {
  shrink::SiteSpec spec;
  spec.module_name = "fc1";
  spec.module_type = "Linear";
  spec.target = "_output_0";
  spec.quant_type = shrink::QuantType::kOutput;
  spec.config.set("quant_bits", "2");
  spec.config.set("quant_dtype", "int2");
  spec.config.set("quant_start_step", "3");
  int s = q_->add_site(spec);
  at::Tensor x = torch::linspace(-1, 1, 11);
  EXPECT_TRUE(torch::equal(q_->quantize(s, x), x));  // step 1
  q_->step();
  EXPECT_TRUE(torch::equal(q_->quantize(s, x), x));     // step 2
  EXPECT_EQ(state(s, "observed").item<float>(), 1.0f);  // ranges are tracked meanwhile
  q_->step();
  at::Tensor y = q_->quantize(s, x);  // step 3: quantized to 3 levels
  EXPECT_FALSE(torch::equal(y, x));
  EXPECT_LE(std::get<0>(at::_unique(y)).numel(), 3);
}

TEST_F(QatTest, EvaluationBeforeAnyTrainingStepIsFinite) {
  q_->set_training(false);
  int w = site("weight", shrink::QuantType::kWeight, "int8");
  int o = site("_output_0", shrink::QuantType::kOutput, "int8");
  at::Tensor x = torch::randn({3, 4});
  at::Tensor yw = q_->quantize(w, x);
  EXPECT_TRUE(torch::isfinite(yw).all().item<bool>());
  EXPECT_TRUE(torch::allclose(yw, x, 0, x.abs().max().item<float>() / 127));
  EXPECT_TRUE(torch::equal(q_->quantize(o, x), x));  // no range tracked yet: unquantized
  // An all-zero tensor never divides by zero: scale is at least float eps.
  at::Tensor zeros =
      q_->quantize(site("weight", shrink::QuantType::kWeight, "int8"), torch::zeros({4}));
  EXPECT_TRUE(torch::equal(zeros, torch::zeros({4})));
}

TEST_F(QatTest, ExportsNniCalibrationFields) {
  int s = site("weight", shrink::QuantType::kWeight, "int8", "affine");
  q_->quantize(s, torch::tensor({-0.5f, 2.0f}));
  shrink::Calibration c = q_->export_site(s);
  EXPECT_NEAR(c.scale.item<float>(), 2.5f / 254, 1e-7);
  EXPECT_EQ(c.quant_bits, 8);
  EXPECT_EQ(c.quant_dtype, "int8");
  EXPECT_EQ(c.quant_scheme, "affine");
  EXPECT_FLOAT_EQ(c.tracked_min, -0.5);
  EXPECT_FLOAT_EQ(c.tracked_max, 2.0);
}

// The fused kernels against ATen's fake-quant (the reference model_qat.pt is exported with), on
// values that include exact ties (k + 0.5 steps), both clipping ends, per tensor and per channel.
TEST_F(QatTest, KernelsMatchAtenFakeQuantize) {
  torch::manual_seed(5);
  const at::Tensor w = torch::cat(
      {torch::randn({3, 2, 5, 5}) * 0.3,
       torch::arange(-60, 60, torch::kFloat).view({1, 2, 6, 10}).slice(2, 0, 5).slice(3, 0, 5) *
           0.01});
  for (const std::string granularity : {"default", "per_channel"}) {
    for (const std::string dtype : {"int8", "uint8", "int4"}) {
      int s = site("weight", shrink::QuantType::kWeight, dtype, "affine", granularity, w);
      // Evaluate with a deliberately narrower range than w's, so that both ends clip.
      q_->quantize(s, w * 0.5);
      q_->set_training(false);
      at::Tensor x = w.clone().requires_grad_(true);
      at::Tensor y = q_->quantize(s, x);
      y.backward(torch::ones_like(y) * 3);
      q_->set_training(true);
      const at::Tensor scale = state(s, "scale"), zp = state(s, "zero_point");
      const int64_t bits = dtype == "int4" ? 4 : 8;
      const bool is_unsigned = dtype[0] == 'u';
      const int64_t qmax = is_unsigned ? (1 << bits) - 1 : (1 << (bits - 1)) - 1;
      const int64_t qmin = is_unsigned ? 0 : -qmax;
      std::tuple<at::Tensor, at::Tensor> ref;
      if (granularity == "default") {
        ref = torch::fake_quantize_per_tensor_affine_cachemask(w, scale.item<double>(),
                                                               zp.item<float>(), qmin, qmax);
      } else {
        ref = at::fake_quantize_per_channel_affine_cachemask(w, scale, zp.to(torch::kInt), 0, qmin,
                                                             qmax);
      }
      EXPECT_TRUE(torch::equal(y.detach(), std::get<0>(ref))) << dtype << " " << granularity;
      EXPECT_TRUE(torch::equal(x.grad(), std::get<1>(ref).to(torch::kFloat) * 3))
          << dtype << " " << granularity;
      EXPECT_GT((std::get<1>(ref) == 0).sum().item<int64_t>(), 0) << "nothing clipped: a weak case";
    }
  }
  // Exact ties round half to even, as nearbyint does.
  int s = site("_output_0", shrink::QuantType::kOutput, "int8", "symmetric");
  q_->quantize(s, torch::tensor({-1.27f, 1.27f}));  // scale 0.01
  at::Tensor ties = torch::tensor({0.005f, 0.015f, 0.025f, -0.005f, -0.015f}) * 1.0f;
  at::Tensor got = q_->quantize(s, ties);
  EXPECT_TRUE(torch::equal(got, torch::fake_quantize_per_tensor_affine(
                                    ties, state(s, "scale").item<double>(), 0, -127, 127)))
      << got
      << torch::fake_quantize_per_tensor_affine(ties, state(s, "scale").item<double>(), 0, -127,
                                                127)
      << state(s, "scale");
}

// The activation range kernel against ATen's aminmax, on sizes around its 16-lane blocks and
// across the parallel split.
TEST(QatKernelTest, MinMaxMatchesAtenAminmax) {
  torch::manual_seed(11);
  for (int64_t n : {1, 15, 16, 17, 1000, 300001, 600007}) {
    const at::Tensor x = torch::randn({n}) * 3 - 1;
    const auto ours = qat::min_max(x);
    const auto ref = torch::aminmax(x);
    EXPECT_EQ(ours.first, std::get<0>(ref).item<float>()) << n;
    EXPECT_EQ(ours.second, std::get<1>(ref).item<float>()) << n;
  }
}

// qat takes tensors in any dense layout: a channels-last activation is quantized where it lies
// (no contiguous copy) and comes back channels-last; a [N, 1, H, W] tensor keeps its exact strides
// through the ABI, so that the next convolution sees what it would have seen unquantized.
TEST_F(QatTest, ActivationsKeepTheirLayout) {
  int s = site("_output_0", shrink::QuantType::kOutput, "int8");
  torch::manual_seed(2);
  const at::Tensor dense = torch::randn({4, 3, 5, 5});
  q_->quantize(s, dense);  // records the range
  q_->set_training(false);
  at::Tensor x = dense.contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(true);
  at::Tensor y = q_->quantize(s, x);
  EXPECT_EQ(y.strides(), x.strides());
  EXPECT_TRUE(torch::equal(y.contiguous(), q_->quantize(s, dense)));
  y.backward(torch::ones_like(y));
  EXPECT_TRUE(x.grad().defined());
  const at::Tensor one_channel = torch::randn({2, 1, 6, 6});
  ASSERT_EQ(one_channel.strides(), (std::vector<int64_t>{36, 36, 6, 1}));
  EXPECT_EQ(q_->quantize(s, one_channel).strides(), one_channel.strides());
}

TEST_F(QatTest, RejectsWhatItCannotDo) {
  EXPECT_THROW(site("weight", shrink::QuantType::kWeight, "int16"), shrink::Error);
  EXPECT_THROW(site("_input_0", shrink::QuantType::kInput, "int8", "affine", "per_channel"),
               shrink::Error);
  shrink::Options bad;
  bad.set("ema_decay", "1.5");
  EXPECT_THROW(shrink::QuantizerInstance(registry_->require("qat"), bad), shrink::Error);
}

#include <shrink/config/config_list.hpp>
#include <shrink/graph/quantized_model.hpp>

TEST(QatTrainingTest, TrainsTheSeedNetWithItsQuickStartConfig) {
  auto registry = shrink::test::registry_of({shrink::test::kPluginDir});
  shrink::Model model = shrink::Model::load(std::string(shrink::test::kTestModelDir) + "/mnist.pt");
  shrink::QuantizerInstance q(registry->require("qat"), {});
  auto sites = shrink::plan_sites(shrink::ConfigList::parse_text(R"(
- op_names: [conv1, conv2, fc1, fc2]
  target_names: [_input_, weight, _output_]
  quant_dtype: int8
  quant_scheme: affine
- op_names: [relu1, relu2, relu3]
  target_names: [_output_]
  quant_dtype: int8
  quant_scheme: affine
)",
                                                                 "quickstart"),
                                  model.ops());
  shrink::QuantizedModel wrapped(model, q, sites);
  wrapped.train(true);
  torch::manual_seed(0);
  at::Tensor x = torch::randn({32, 1, 28, 28});
  at::Tensor target = torch::randint(0, 10, {32});
  std::vector<at::Tensor> params;
  for (const auto& p : model.module().parameters()) params.push_back(p);
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(0.01).momentum(0.9));
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    sgd.zero_grad();
    at::Tensor loss = torch::nll_loss(wrapped.forward(x), target);
    loss.backward();
    sgd.step();
    q.step();
    if (step == 0) first = loss.item<float>();
    last = loss.item<float>();
  }
  // Slower than float on random labels: the logits' tracked range (EMA 0.99) lags their growth
  // and clips them, as in NNI and torch.ao.
  EXPECT_LT(last, 0.75f * first) << first << " -> " << last;
  // Every site recorded a range and exports a usable calibration.
  for (int site : wrapped.site_ids()) {
    shrink::Calibration c = q.export_site(site);
    EXPECT_GT(c.scale.min().item<float>(), 0.0f);
    EXPECT_LE(c.tracked_min, 0.0 + 1e-6) << q.site_spec(site).module_name;
  }
}
