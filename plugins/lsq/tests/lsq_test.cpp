// The lsq plugin, loaded from the built plugin folder: its forward against a naive element-wise
// implementation, its gradients against the paper's closed form, its step-size initialisation,
// its export, and a short training run.
#include "plugin_fixtures.hpp"

#include <shrink/core/error.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace {

class LsqTest : public ::testing::Test {
 protected:
  LsqTest()
      : registry_(shrink::test::registry_of({shrink::test::kPluginDir})),
        q_(std::make_unique<shrink::QuantizerInstance>(registry_->require("lsq"),
                                                       shrink::Options{})) {
    q_->set_training(true);
  }

  int site(shrink::QuantType type, const std::string& dtype,
           const std::string& granularity = "default", const at::Tensor& sample = {}) {
    shrink::SiteSpec spec;
    spec.module_name = "fc1";
    spec.module_type = "Linear";
    spec.target = type == shrink::QuantType::kWeight ? "weight" : "_input_0";
    spec.quant_type = type;
    spec.config.set("quant_dtype", dtype);
    spec.config.set("quant_bits", dtype.substr(dtype.find("int") + 3));
    spec.config.set("granularity", granularity);
    spec.sample = sample;
    return q_->add_site(spec);
  }
  at::Tensor step(int s) { return q_->site_state(s)[0].value; }

  std::unique_ptr<shrink::PluginRegistry> registry_;
  std::unique_ptr<shrink::QuantizerInstance> q_;
};

struct Range {
  double qn, qp;
};
Range range_of(int bits, bool is_signed) {
  return is_signed ? Range{std::ldexp(1.0, bits - 1), std::ldexp(1.0, bits - 1) - 1}
                   : Range{0.0, std::ldexp(1.0, bits) - 1};
}

// round(clamp(x / s, -Qn, Qp)) * s, one element at a time (round half to even, as torch.round).
at::Tensor naive_lsq(const at::Tensor& x, float s, Range r) {
  at::Tensor out = torch::empty_like(x);
  auto in = x.contiguous();
  const float* a = in.data_ptr<float>();
  float* y = out.data_ptr<float>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float v =
        std::min(std::max(a[i] / s, static_cast<float>(-r.qn)), static_cast<float>(r.qp));
    y[i] = std::nearbyint(v) * s;
  }
  return out;
}

}  // namespace

TEST_F(LsqTest, ForwardMatchesNaiveImplementationForEveryWidthAndSign) {
  torch::manual_seed(0);
  for (int bits = 2; bits <= 8; ++bits) {
    for (bool is_signed : {true, false}) {
      const std::string dtype = (is_signed ? "int" : "uint") + std::to_string(bits);
      const int s = site(shrink::QuantType::kInput, dtype);
      const at::Tensor x = torch::randn({4, 37}) * 2;
      const at::Tensor y = q_->quantize(s, x);
      const Range r = range_of(bits, is_signed);
      // The step size starts at 2 * mean|x| / sqrt(Qp), from the first batch.
      const float s0 = static_cast<float>(2 * x.abs().mean().item<double>() / std::sqrt(r.qp));
      EXPECT_NEAR(step(s).item<float>(), s0, 1e-6 * s0) << dtype;
      EXPECT_TRUE(torch::allclose(y, naive_lsq(x, step(s).item<float>(), r), 0, 1e-6)) << dtype;
      // At most 2^bits distinct values, all on the grid.
      EXPECT_LE(std::get<0>(at::_unique(y)).numel(), (1 << bits)) << dtype;
      // A later batch keeps the step size it has (no re-initialisation).
      q_->quantize(s, x * 10);
      EXPECT_NEAR(step(s).item<float>(), s0, 1e-6 * s0) << dtype;
    }
  }
}

TEST_F(LsqTest, GradientsMatchThePapersClosedForm) {
  const int s = site(shrink::QuantType::kInput, "int4");
  torch::manual_seed(1);
  const at::Tensor data = torch::randn({3, 50}) * 1.5;
  q_->quantize(s, data);          // initialises the step size
  data.narrow(1, 0, 3).mul_(20);  // outliers past the clipping range, both signs
  const float st = step(s).item<float>();
  const Range r = range_of(4, true);
  const at::Tensor x = data.clone().requires_grad_(true);
  const at::Tensor upstream = torch::randn({3, 50});
  (q_->quantize(s, x) * upstream).sum().backward();

  // dL/dx: straight-through inside [-Qn, Qp] * s, zero outside. dL/ds: g * sum(upstream * dv),
  // dv = round(v) - v inside, -Qn below, Qp above; g = 1 / sqrt(features per sample * Qp).
  const float* xv = data.data_ptr<float>();
  const float* up = upstream.data_ptr<float>();
  const at::Tensor gx = x.grad();
  double ds = 0;
  int outside = 0;
  for (int64_t i = 0; i < data.numel(); ++i) {
    const double v = xv[i] / st;
    double dv;
    bool inside = true;
    if (v < -r.qn) {
      dv = -r.qn, inside = false;
    } else if (v > r.qp) {
      dv = r.qp, inside = false;
    } else {
      dv = std::nearbyint(v) - v;
    }
    outside += !inside;
    ds += up[i] * dv;
    EXPECT_FLOAT_EQ(gx.data_ptr<float>()[i], inside ? up[i] : 0.0f) << i;
  }
  ASSERT_GT(outside, 0) << "the data should reach past the clipping range";
  ds /= std::sqrt(50.0 * r.qp);
  ASSERT_TRUE(step(s).grad().defined());
  EXPECT_NEAR(step(s).grad().item<double>(), ds, 1e-5 * std::max(1.0, std::abs(ds)));
}

// NNI's LSQ weight path returns no gradient for the weight; here the weight trains.
TEST_F(LsqTest, WeightReceivesItsGradientAndPerChannelStepsTheirOwn) {
  torch::manual_seed(2);
  const at::Tensor w0 = torch::randn({6, 10}) * torch::linspace(0.1, 2.0, 6).reshape({6, 1});
  const int s = site(shrink::QuantType::kWeight, "int8", "per_channel", w0);
  const at::Tensor w = w0.clone().requires_grad_(true);
  const at::Tensor upstream = torch::randn({6, 10});
  const at::Tensor y = q_->quantize(s, w);
  (y * upstream).sum().backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_TRUE(torch::allclose(w.grad(), upstream));  // 8 bits: nothing clips at init
  // One step per output channel, each from its own row; each row's own grid.
  ASSERT_EQ(step(s).sizes(), (std::vector<int64_t>{6}));
  const Range r = range_of(8, true);
  for (int64_t c = 0; c < 6; ++c) {
    const float sc = static_cast<float>(2 * w0[c].abs().mean().item<double>() / std::sqrt(r.qp));
    EXPECT_NEAR(step(s)[c].item<float>(), sc, 1e-6 * sc);
    EXPECT_TRUE(
        torch::allclose(y[c].detach(), naive_lsq(w0[c], step(s)[c].item<float>(), r), 0, 1e-6));
  }
  // Per-channel step gradients: g = 1 / sqrt(weights per channel * Qp).
  ASSERT_TRUE(step(s).grad().defined());
  const at::Tensor v = w0 / step(s).detach().reshape({6, 1});
  const at::Tensor expected = (upstream * (v.round() - v)).sum(1) / std::sqrt(10.0 * r.qp);
  EXPECT_TRUE(torch::allclose(step(s).grad(), expected, 1e-4, 1e-6));
}

TEST_F(LsqTest, ExportIsWhatAtenFakeQuantizeComputes) {
  const int s = site(shrink::QuantType::kInput, "uint3");
  torch::manual_seed(3);
  const at::Tensor x = torch::rand({2, 40}) * 3;
  const at::Tensor y = q_->quantize(s, x);
  const shrink::Calibration c = q_->export_site(s);
  EXPECT_EQ(c.quant_min, 0);
  EXPECT_EQ(c.quant_max, 7);
  EXPECT_EQ(c.quant_dtype, "uint3");
  const at::Tensor aten = torch::fake_quantize_per_tensor_affine(x, c.scale.item<double>(), 0,
                                                                 c.quant_min, c.quant_max);
  EXPECT_TRUE(torch::allclose(y, aten, 0, 1e-6));
}

TEST_F(LsqTest, RefusesWhatItCannotDo) {
  shrink::SiteSpec spec;
  spec.module_name = "fc1";
  spec.target = "weight";
  spec.quant_type = shrink::QuantType::kWeight;
  spec.config.set("quant_bits", "9");
  EXPECT_THROW(q_->add_site(spec), shrink::Error);
  spec.config.set("quant_bits", "4");
  spec.target = "_input_0";
  spec.quant_type = shrink::QuantType::kInput;
  spec.config.set("granularity", "per_channel");
  EXPECT_THROW(q_->add_site(spec), shrink::Error);
}

// A linear model y = W x with 3-bit weights and inputs, trained by SGD on W and both step sizes:
// the loss falls.
TEST_F(LsqTest, ShortTrainingLowersTheLoss) {
  torch::manual_seed(4);
  const at::Tensor target_w = torch::randn({4, 16});
  const at::Tensor data = torch::randn({256, 16});
  const at::Tensor labels = data.matmul(target_w.t());
  const at::Tensor w = (torch::randn({4, 16}) * 0.1).requires_grad_(true);
  const int sw = site(shrink::QuantType::kWeight, "int3", "default", w.detach());
  const int sx = site(shrink::QuantType::kInput, "int3");
  auto loss_of = [&](const at::Tensor& x, const at::Tensor& yt) {
    return (q_->quantize(sx, x).matmul(q_->quantize(sw, w).t()) - yt).pow(2).mean();
  };
  std::vector<at::Tensor> params = {w};
  for (const auto& p : q_->parameters()) params.push_back(p);
  ASSERT_EQ(params.size(), 3u);
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(0.05));
  const double first = loss_of(data, labels).item<double>();
  for (int i = 0; i < 200; ++i) {
    const int64_t b = (i * 32) % 256;
    sgd.zero_grad();
    loss_of(data.narrow(0, b, 32), labels.narrow(0, b, 32)).backward();
    sgd.step();
    q_->step();
  }
  const double last = loss_of(data, labels).item<double>();
  EXPECT_LT(last, 0.3 * first) << first << " -> " << last;
}
