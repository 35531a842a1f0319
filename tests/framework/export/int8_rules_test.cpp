// The int8 lowering's rules, one op family at a time: a tiny fake-quant TorchScript module (its
// sites as model_qat.pt has them: aten::fake_quantize_* with constant parameters) is saved,
// loaded and lowered; the lowered graph has the family's int8 op, and its outputs match the
// fake-quant module's within one quantization step of the output. The rule table covers every
// family, and an op with no rule stays float and is reported.
//
// The lowering is private to the framework: this test includes framework/src's headers.
#include <shrink/core/error.hpp>
#include <shrink/export/int8_export.hpp>

#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "graph/graph_utils.hpp"

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>

#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using shrink::detail::all_nodes;
using shrink::detail::is;

// Nodes of `kind` in forward's top-level block (the quantize method's vectorised path, inlined in
// a branch, has ops of its own).
int count_kind(torch::jit::Module& m, const char* kind) {
  int n = 0;
  for (const torch::jit::Node* node : m.get_method("forward").graph()->nodes()) {
    n += is(node, kind) ? 1 : 0;
  }
  return n;
}

// Nodes of `kind` anywhere in forward, branches included.
int count_kind_anywhere(torch::jit::Module& m, const char* kind) {
  int n = 0;
  for (const torch::jit::Node* node : all_nodes(m.get_method("forward").graph()->block())) {
    n += is(node, kind) ? 1 : 0;
  }
  return n;
}

// A module attribute `name`: `w` and its per-output-channel symmetric int8 fake-quant parameters
// `<name>_scale` and `<name>_zero_point`.
void add_weight(torch::jit::Module& m, const std::string& name, const at::Tensor& w) {
  m.register_parameter(name, w, /*is_buffer=*/false);
  const at::Tensor absmax = w.abs().reshape({w.size(0), -1}).amax(1).clamp_min(1e-6);
  m.register_buffer(name + "_scale", absmax / 127);
  m.register_buffer(name + "_zero_point", at::zeros({w.size(0)}, at::kInt));
}

// As model_qat.pt has them, per-channel fake-quant parameters are constants of the graph: each
// read of a `*_scale` or `*_zero_point` attribute becomes its value.
void bake_fake_quant_parameters(torch::jit::Module& m) {
  auto graph = m.get_method("forward").graph();
  const std::vector<torch::jit::Node*> nodes(graph->nodes().begin(), graph->nodes().end());
  for (torch::jit::Node* n : nodes) {
    if (n->kind() != c10::prim::GetAttr) continue;
    const std::string name = n->s(c10::attr::name);
    const auto ends_with = [&](const std::string& end) {
      return name.size() > end.size() &&
             name.compare(name.size() - end.size(), end.size(), end) == 0;
    };
    if (!ends_with("_scale") && !ends_with("_zero_point")) continue;
    torch::jit::WithInsertPoint guard(n);
    n->output()->replaceAllUsesWith(graph->insertConstant(m.attr(name).toTensor()));
  }
}

struct Lowered {
  torch::jit::Module module;
  shrink::Int8Export result;
};

class Int8RulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shrink::use_int8_engine();
    torch::manual_seed(0);
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    file_ = (fs::temp_directory_path() /
             ("shrink_int8_rules_" + std::to_string(::getpid()) + "_" + test + ".pt"))
                .string();
  }
  void TearDown() override { fs::remove(file_); }

  // Defines `source` as m's forward, saved as the fake-quant model.
  void save_fake_quant(torch::jit::Module& m, const std::string& source) {
    m.define(source);
    bake_fake_quant_parameters(m);
    m.save(file_);
  }

  torch::jit::Module reference() {
    torch::jit::Module m = torch::jit::load(file_);
    m.eval();
    return m;
  }

  Lowered lower() {
    Lowered out{torch::jit::load(file_), {}};
    out.module.eval();
    out.result =
        shrink::int8::Lowering(out.module, file_, shrink::int8::RuleTable::standard()).run();
    return out;
  }

  // The lowered module's outputs on `inputs` against the fake-quant module's: at most `step`
  // apart (one quantization step of the output; 0: equal).
  void expect_within(Lowered& lowered, const std::vector<c10::IValue>& inputs, double step) {
    torch::NoGradGuard no_grad;
    const at::Tensor want = reference().forward(inputs).toTensor();
    const at::Tensor got = lowered.module.forward(inputs).toTensor();
    ASSERT_EQ(got.sizes(), want.sizes());
    ASSERT_FALSE(got.is_quantized());
    const double worst = (got - want).abs().max().item<double>();
    // Float rounding of values on the output's grid aside.
    EXPECT_LE(worst, step * (1 + 1e-5) + 1e-7) << "one quantization step is " << step;
  }

  std::string file_;
};

// --- The fake-quant of an activation: quantize, and the twin read by what follows.

TEST_F(Int8RulesTest, ActivationFakeQuantBecomesOneQuantize) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    b = torch.fake_quantize_per_tensor_affine(a, 0.05, 128, 0, 255)
    return torch.flatten(b, 1)
)");
  Lowered lowered = lower();
  // The second fake-quant has the parameters of the first: already quantized so.
  EXPECT_EQ(count_kind_anywhere(lowered.module, "aten::quantize_per_tensor"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::fake_quantize_per_tensor_affine"), 0);
  expect_within(lowered, {torch::randn({2, 3, 4, 4})}, 0);
}

TEST_F(Int8RulesTest, ActivationSitesThatAreNotInt8AreErrorsNamingTheSite) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    return torch.flatten(torch.fake_quantize_per_tensor_affine(x, 0.1, 0, 0, 15), 1)
)");
  try {
    lower();
    FAIL() << "a 4-bit site must not lower";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("is a 4-bit site (integer range [0, 15])"),
              std::string::npos)
        << e.what();
  }
}

// --- conv2d: quantized::conv2d[_relu], the BatchNorm folded.

TEST_F(Int8RulesTest, Conv2dFoldsBatchNormAndFusesRelu) {
  torch::jit::Module m("m");
  add_weight(m, "weight", torch::randn({8, 3, 3, 3}) * 0.3);
  m.register_buffer("bias", torch::randn({8}) * 0.1);
  m.register_buffer("bn_weight", torch::rand({8}) + 0.5);
  m.register_buffer("bn_bias", torch::randn({8}) * 0.2);
  m.register_buffer("bn_mean", torch::randn({8}) * 0.2);
  m.register_buffer("bn_var", torch::rand({8}) + 0.5);
  save_fake_quant(m, R"(
def forward(self, x):
    x = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    w = torch.fake_quantize_per_channel_affine(self.weight, self.weight_scale, self.weight_zero_point, 0, -128, 127)
    y = torch.conv2d(x, w, self.bias, [1, 1], [1, 1], [1, 1], 1)
    y = torch.batch_norm(y, self.bn_weight, self.bn_bias, self.bn_mean, self.bn_var, False, 0.1, 1e-5, False)
    return torch.fake_quantize_per_tensor_affine(torch.relu(y), 0.04, 0, 0, 255)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 1);
  EXPECT_EQ(count_kind(lowered.module, "quantized::conv2d_relu"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::batch_norm"), 0);
  EXPECT_EQ(count_kind(lowered.module, "aten::conv2d"), 0);
  expect_within(lowered, {torch::randn({2, 3, 8, 8})}, 0.04);
}

TEST_F(Int8RulesTest, Conv2dFusesHardtanhWhereTheOutputRangeEndsBelowSix) {
  torch::jit::Module m("m");
  add_weight(m, "weight", torch::randn({4, 2, 3, 3}) * 0.3);
  save_fake_quant(m, R"(
def forward(self, x):
    x = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    w = torch.fake_quantize_per_channel_affine(self.weight, self.weight_scale, self.weight_zero_point, 0, -128, 127)
    y = torch.conv2d(x, w, None, [1, 1], [0, 0], [1, 1], 1)
    return torch.fake_quantize_per_tensor_affine(torch.hardtanh(y, 0.0, 6.0), 0.02, 0, 0, 255)
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "quantized::conv2d_relu"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::hardtanh"), 0);
  expect_within(lowered, {torch::randn({2, 2, 6, 6})}, 0.02);
}

TEST_F(Int8RulesTest, Conv2dWithoutAFakeQuantAfterItStaysFloatWithANote) {
  torch::jit::Module m("m");
  add_weight(m, "weight", torch::randn({4, 2, 3, 3}) * 0.3);
  save_fake_quant(m, R"(
def forward(self, x):
    x = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    w = torch.fake_quantize_per_channel_affine(self.weight, self.weight_scale, self.weight_zero_point, 0, -128, 127)
    return torch.conv2d(x, w, None, [1, 1], [0, 0], [1, 1], 1)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 0);
  EXPECT_EQ(count_kind(lowered.module, "aten::conv2d"), 1);
  ASSERT_EQ(lowered.result.notes.size(), 1u);
  EXPECT_EQ(lowered.result.notes[0],
            "aten::conv2d (weight) stays float: its output is not fake-quantized; give it an "
            "_output_ site");
  expect_within(lowered, {torch::randn({2, 2, 6, 6})}, 0);
}

// The note names the op whose output a site should quantize: the ReLU that would fuse.
TEST_F(Int8RulesTest, AFloatConv2dNoteNamesTheOpToQuantizeAfterIt) {
  torch::jit::Module m("m");
  add_weight(m, "weight", torch::randn({4, 2, 3, 3}) * 0.3);
  save_fake_quant(m, R"(
def forward(self, x):
    x = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    w = torch.fake_quantize_per_channel_affine(self.weight, self.weight_scale, self.weight_zero_point, 0, -128, 127)
    return torch.relu(torch.conv2d(x, w, None, [1, 1], [0, 0], [1, 1], 1))
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 0);
  ASSERT_EQ(lowered.result.notes.size(), 1u);
  EXPECT_EQ(lowered.result.notes[0],
            "aten::conv2d (weight) stays float: its output is not fake-quantized; quantize the "
            "output of aten::relu (relu) instead (an _output_ site there)");
  expect_within(lowered, {torch::randn({2, 2, 6, 6})}, 0);
}

// --- linear: quantized::linear; small ones float; a flattened convolution output read
// channels-last.

TEST_F(Int8RulesTest, LinearBecomesQuantizedLinear) {
  torch::jit::Module m("m");
  add_weight(m, "weight", torch::randn({64, 256}) * 0.1);  // 16384 weights: int8
  m.register_buffer("bias", torch::randn({64}) * 0.1);
  save_fake_quant(m, R"(
def forward(self, x):
    x = torch.fake_quantize_per_tensor_affine(x, 0.05, 0, -128, 127)
    w = torch.fake_quantize_per_channel_affine(self.weight, self.weight_scale, self.weight_zero_point, 0, -128, 127)
    return torch.fake_quantize_per_tensor_affine(torch.linear(x, w, self.bias), 0.03, 0, -128, 127)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 1);
  EXPECT_EQ(count_kind(lowered.module, "quantized::linear"), 1);
  expect_within(lowered, {torch::randn({5, 256})}, 0.03);
}

TEST_F(Int8RulesTest, SmallLinearRunsInFloatOnItsFakeQuantizedWeights) {
  torch::jit::Module m("m");
  add_weight(m, "weight", torch::randn({8, 16}) * 0.3);
  save_fake_quant(m, R"(
def forward(self, x):
    x = torch.fake_quantize_per_tensor_affine(x, 0.05, 0, -128, 127)
    w = torch.fake_quantize_per_channel_affine(self.weight, self.weight_scale, self.weight_zero_point, 0, -128, 127)
    return torch.fake_quantize_per_tensor_affine(torch.linear(x, w, None), 0.03, 0, -128, 127)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 0);
  EXPECT_EQ(count_kind(lowered.module, "quantized::linear"), 0);
  ASSERT_EQ(lowered.result.float_ops.size(), 1u);
  EXPECT_NE(lowered.result.float_ops[0].find(
                "runs in float, faster than oneDNN's int8 linear at 128 weights"),
            std::string::npos)
      << lowered.result.float_ops[0];
  expect_within(lowered, {torch::randn({3, 16})}, 0.03);
}

TEST_F(Int8RulesTest, LinearReadsAFlattenedConvolutionOutputChannelsLast) {
  torch::jit::Module m("m");
  add_weight(m, "conv_weight", torch::randn({4, 1, 3, 3}) * 0.3);
  add_weight(m, "fc_weight", torch::randn({64, 256}) * 0.1);  // 4 channels x 8 x 8
  save_fake_quant(m, R"(
def forward(self, x):
    x = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    w = torch.fake_quantize_per_channel_affine(self.conv_weight, self.conv_weight_scale, self.conv_weight_zero_point, 0, -128, 127)
    y = torch.fake_quantize_per_tensor_affine(torch.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1), 0.04, 128, 0, 255)
    v = torch.fake_quantize_per_channel_affine(self.fc_weight, self.fc_weight_scale, self.fc_weight_zero_point, 0, -128, 127)
    return torch.fake_quantize_per_tensor_affine(torch.linear(torch.flatten(y, 1), v, None), 0.05, 128, 0, 255)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 2);
  EXPECT_EQ(count_kind(lowered.module, "quantized::linear"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::transpose"), 1);
  ASSERT_FALSE(lowered.result.notes.empty());
  EXPECT_NE(
      lowered.result.notes[0].find("flattens its channels-last input without a copy (4 channels"),
      std::string::npos)
      << lowered.result.notes[0];
  expect_within(lowered, {torch::randn({2, 1, 8, 8})}, 0.05);
}

// --- add, cat, hardswish: the op and the fake-quant after it, one quantized op.

TEST_F(Int8RulesTest, AddAndReluBecomeQuantizedAddRelu) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x, y):
    a = torch.fake_quantize_per_tensor_affine(x, 0.04, 0, -128, 127)
    b = torch.fake_quantize_per_tensor_affine(y, 0.03, 0, -128, 127)
    return torch.fake_quantize_per_tensor_affine(torch.relu(a + b), 0.05, 0, 0, 255)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 1);
  EXPECT_EQ(count_kind(lowered.module, "quantized::add_relu"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::add"), 0);
  expect_within(lowered, {torch::randn({2, 4, 5, 5}), torch::randn({2, 4, 5, 5})}, 0.05);
}

TEST_F(Int8RulesTest, CatBecomesQuantizedCat) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x, y):
    a = torch.fake_quantize_per_tensor_affine(x, 0.04, 128, 0, 255)
    b = torch.fake_quantize_per_tensor_affine(y, 0.02, 128, 0, 255)
    return torch.fake_quantize_per_tensor_affine(torch.cat([a, b], 1), 0.05, 128, 0, 255)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 1);
  EXPECT_EQ(count_kind(lowered.module, "quantized::cat"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::cat"), 0);
  expect_within(lowered, {torch::randn({2, 3, 4, 4}), torch::randn({2, 5, 4, 4})}, 0.05);
}

TEST_F(Int8RulesTest, HardswishBecomesQuantizedHardswish) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    return torch.fake_quantize_per_tensor_affine(torch.hardswish(a), 0.03, 20, 0, 255)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 1);
  EXPECT_EQ(count_kind(lowered.module, "quantized::hardswish"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::hardswish"), 0);
  expect_within(lowered, {torch::randn({2, 3, 4, 4}) * 2}, 0.03);
}

// densenet's pattern: a list grown by append and concatenated after each append. Each cat reads
// its elements as they stand there, as a quantized cat.
TEST_F(Int8RulesTest, CatOfAListGrownByAppendBecomesQuantizedCat) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x, y):
    features = [torch.fake_quantize_per_tensor_affine(x, 0.04, 128, 0, 255)]
    c1 = torch.fake_quantize_per_tensor_affine(torch.cat(features, 1), 0.04, 128, 0, 255)
    features.append(torch.fake_quantize_per_tensor_affine(y, 0.02, 128, 0, 255))
    c2 = torch.fake_quantize_per_tensor_affine(torch.cat(features, 1), 0.05, 128, 0, 255)
    return torch.cat([c1, c2], 1)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 2);
  EXPECT_EQ(count_kind(lowered.module, "quantized::cat"), 2);
  EXPECT_EQ(count_kind(lowered.module, "aten::append"), 0);
  expect_within(lowered, {torch::randn({2, 3, 4, 4}), torch::randn({2, 5, 4, 4})}, 0.05);
}

// --- BatchNorm that follows no convolution: quantized::batch_norm[_relu].

TEST_F(Int8RulesTest, BatchNormAloneAndReluBecomeQuantizedBatchNormRelu) {
  torch::jit::Module m("m");
  m.register_buffer("bn_weight", torch::rand({6}) + 0.5);
  m.register_buffer("bn_bias", torch::randn({6}) * 0.2);
  m.register_buffer("bn_mean", torch::randn({6}) * 0.2);
  m.register_buffer("bn_var", torch::rand({6}) + 0.5);
  save_fake_quant(m, R"(
def forward(self, x, y):
    a = torch.fake_quantize_per_tensor_affine(x, 0.04, 128, 0, 255)
    b = torch.fake_quantize_per_tensor_affine(y, 0.03, 128, 0, 255)
    c = torch.fake_quantize_per_tensor_affine(torch.cat([a, b], 1), 0.05, 128, 0, 255)
    n = torch.batch_norm(c, self.bn_weight, self.bn_bias, self.bn_mean, self.bn_var, False, 0.1, 1e-5, False)
    return torch.fake_quantize_per_tensor_affine(torch.relu(n), 0.03, 0, 0, 255)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 2);
  EXPECT_EQ(count_kind(lowered.module, "quantized::batch_norm_relu"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::batch_norm"), 0);
  EXPECT_EQ(count_kind(lowered.module, "aten::relu"), 0);
  expect_within(lowered, {torch::randn({2, 2, 5, 5}), torch::randn({2, 4, 5, 5})}, 0.03);
}

// --- sigmoid, hardsigmoid, SiLU and the squeeze-excitation's mul.

// A gate that an int8 mul reads (squeeze-excitation, mobilenet_v3's hardsigmoid gate).
TEST_F(Int8RulesTest, SigmoidAndHardsigmoidGatesRunOnTheFixedGrid) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    s = torch.fake_quantize_per_tensor_affine(torch.sigmoid(a) * a, 0.025, 128, 0, 255)
    h = torch.fake_quantize_per_tensor_affine(torch.hardsigmoid(a) * a, 0.025, 128, 0, 255)
    return torch.cat([s, h], 1)
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "quantized::mul"), 2);
  // Both read the quantized tensor, and the mul reads theirs: no dequantize between.
  for (const torch::jit::Node* n : lowered.module.get_method("forward").graph()->nodes()) {
    if (is(n, "aten::sigmoid") || is(n, "aten::hardsigmoid")) {
      EXPECT_FALSE(is(n->input(0)->node(), "aten::dequantize")) << *n;
    }
  }
  // The gate within one step of its 1/256 grid (1 saturates at 255/256), times |a| <= 6.4.
  expect_within(lowered, {torch::randn({2, 3, 4, 4}) * 2}, 0.025 + 6.4 / 256);
}

// A sigmoid that ends the model keeps float's precision: the fixed grid would saturate at 255/256
// and round values below 1/512 to 0, which the fake-quant model never computed.
TEST_F(Int8RulesTest, ASigmoidNoInt8MulReadsStaysFloat) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    return torch.sigmoid(a)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 0);
  EXPECT_EQ(count_kind(lowered.module, "aten::sigmoid"), 1);
  expect_within(lowered, {torch::randn({2, 3, 4, 4}) * 3}, 0);  // exactly the fake-quant model
}

TEST_F(Int8RulesTest, SiluBecomesQuantizedMulOfItsSigmoid) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    return torch.fake_quantize_per_tensor_affine(torch.silu(a), 0.025, 20, 0, 255)
)");
  Lowered lowered = lower();
  EXPECT_EQ(lowered.result.quantized_ops, 1);
  EXPECT_EQ(count_kind(lowered.module, "quantized::mul"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::silu"), 0);
  // The sigmoid within one step of its 1/256 grid, times |x| <= 6.4, adds at most 0.025.
  expect_within(lowered, {torch::randn({2, 3, 4, 4}) * 2}, 0.025 + 6.4 / 256);
}

TEST_F(Int8RulesTest, SqueezeExcitationMulBroadcastsOnInt8) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x, s):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    b = torch.fake_quantize_per_tensor_affine(s, 0.04, 128, 0, 255)
    scale = torch.sigmoid(torch.adaptive_avg_pool2d(b, [1, 1]))
    return torch.fake_quantize_per_tensor_affine(scale * a, 0.03, 128, 0, 255)
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "quantized::mul"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::mul"), 0);
  // The scale within one step of its 1/256 grid moves the product by at most |a| / 256.
  expect_within(lowered, {torch::randn({2, 4, 5, 5}) * 2, torch::randn({2, 4, 5, 5})},
                0.03 + 6.4 / 256);
}

TEST_F(Int8RulesTest, MulByAScalarStaysFloat) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    return torch.fake_quantize_per_tensor_affine(a * 0.5, 0.03, 128, 0, 255)
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "quantized::mul"), 0);
  EXPECT_EQ(count_kind(lowered.module, "aten::mul"), 1);
  expect_within(lowered, {torch::randn({2, 3, 4, 4})}, 0);
}

// --- chunk and split: the pieces of a quantized tensor (shufflenet's x1, x2 = x.chunk(2, 1)).

TEST_F(Int8RulesTest, ChunkAndSplitPiecesStayQuantized) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    x1, x2 = a.chunk(2, 1)
    y1, y2 = torch.split(x2, [1, 3], 1)
    out = torch.cat([y2, x1, y1], 1)
    return torch.fake_quantize_per_tensor_affine(out, 0.05, 128, 0, 255)
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "quantized::cat"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::chunk"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::split"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::dequantize"), 1);
  expect_within(lowered, {torch::randn({2, 8, 4, 4})}, 0);
}

TEST_F(Int8RulesTest, MeanRunsOnTheQuantizedTensor) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    return a.mean([2, 3])
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "aten::mean"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::dequantize"), 1);
  expect_within(lowered, {torch::randn({2, 3, 8, 8})}, 0.05);  // the mean re-rounded
}

// shufflenet at 32x32: the mean of an int8 convolution's 1x1-pixel output, whose keepdim=False
// form fails on LibTorch's channels-last int8 tensors.
TEST_F(Int8RulesTest, MeanOfAOnePixelConvolutionOutputRuns) {
  torch::jit::Module m("m");
  add_weight(m, "weight", torch::randn({8, 2, 3, 3}) * 0.3);
  save_fake_quant(m, R"(
def forward(self, x):
    x = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    w = torch.fake_quantize_per_channel_affine(self.weight, self.weight_scale, self.weight_zero_point, 0, -128, 127)
    y = torch.fake_quantize_per_tensor_affine(torch.relu(torch.conv2d(x, w, None, [1, 1], [0, 0], [1, 1], 1)), 0.03, 0, 0, 255)
    return torch.cat([y.mean([2, 3]), y.mean([-1, -2])], 1)
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "quantized::conv2d_relu"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::mean"), 2);
  expect_within(lowered, {torch::randn({2, 2, 3, 3})}, 0.03);
}

// --- Ops that run on the quantized tensor as they are: one dequantize, at the end.

TEST_F(Int8RulesTest, PoolingRunsOnTheQuantizedTensor) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    p = torch.max_pool2d(a, [2, 2], [2, 2], [0, 0], [1, 1], False)
    return torch.adaptive_avg_pool2d(p, [1, 1])
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "aten::max_pool2d"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::adaptive_avg_pool2d"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::dequantize"), 1);
  expect_within(lowered, {torch::randn({2, 3, 8, 8})}, 0.05);  // the average re-rounded
}

TEST_F(Int8RulesTest, InPlaceReluRunsOutOfPlaceOnTheQuantizedTensor) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    return torch.hardtanh(torch.relu_(a), 0.0, 6.0)
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "aten::relu_"), 0);
  EXPECT_EQ(count_kind(lowered.module, "aten::relu"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::hardtanh"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::dequantize"), 1);
  expect_within(lowered, {torch::randn({2, 3, 4, 4})}, 0);
}

TEST_F(Int8RulesTest, ReshapesRunOnTheQuantizedTensorViewAsReshape) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    return torch.transpose(a.view([-1, 16]), 0, 1).contiguous()
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "aten::view"), 0);
  EXPECT_EQ(count_kind(lowered.module, "aten::reshape"), 1);
  EXPECT_EQ(count_kind(lowered.module, "aten::dequantize"), 1);
  expect_within(lowered, {torch::randn({2, 2, 4, 4})}, 0);
}

TEST_F(Int8RulesTest, DropoutGoesInEvaluation) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    return torch.flatten(torch.dropout(a, 0.5, False), 1)
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "aten::dropout"), 0);
  EXPECT_EQ(count_kind(lowered.module, "aten::dequantize"), 1);
  expect_within(lowered, {torch::randn({2, 3, 4, 4})}, 0);
}

// --- Regions: int8 ops joined by int8 values; what the export times against float.

TEST_F(Int8RulesTest, Int8OpsGroupIntoRegionsThatAFloatOpSeparates) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x, y):
    a = torch.fake_quantize_per_tensor_affine(x, 0.04, 128, 0, 255)
    b = torch.fake_quantize_per_tensor_affine(y, 0.03, 128, 0, 255)
    s = torch.fake_quantize_per_tensor_affine(torch.relu(a + b), 0.05, 0, 0, 255)
    c = torch.fake_quantize_per_tensor_affine(torch.cat([s, a], 1), 0.05, 0, 0, 255)
    t = torch.fake_quantize_per_tensor_affine(torch.tanh(c), 0.01, 128, 0, 255)
    return torch.fake_quantize_per_tensor_affine(torch.hardswish(t), 0.02, 20, 0, 255)
)");
  Lowered lowered = lower();
  ASSERT_EQ(lowered.result.regions.size(), 2u);
  EXPECT_EQ(lowered.result.regions[0].ops,
            (std::vector<std::string>{"aten::add (add)", "aten::cat (cat)"}));
  EXPECT_EQ(lowered.result.regions[1].ops,
            (std::vector<std::string>{"aten::hardswish (hardswish)"}));
  EXPECT_TRUE(lowered.result.regions[0].int8);
  expect_within(lowered, {torch::randn({2, 3, 4, 4}), torch::randn({2, 3, 4, 4})}, 0.02);
}

TEST_F(Int8RulesTest, OpsKeptFloatStayFloatOnTheirFakeQuantizedValues) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x, y):
    a = torch.fake_quantize_per_tensor_affine(x, 0.04, 128, 0, 255)
    b = torch.fake_quantize_per_tensor_affine(y, 0.03, 128, 0, 255)
    return torch.fake_quantize_per_tensor_affine(torch.relu(a + b), 0.05, 0, 0, 255)
)");
  Lowered lowered{torch::jit::load(file_), {}};
  lowered.module.eval();
  lowered.result = shrink::int8::Lowering(lowered.module, file_,
                                          shrink::int8::RuleTable::standard(), {"aten::add (add)"})
                       .run();
  EXPECT_EQ(lowered.result.quantized_ops, 0);
  EXPECT_EQ(count_kind(lowered.module, "quantized::add_relu"), 0);
  ASSERT_EQ(lowered.result.float_ops.size(), 1u);
  EXPECT_EQ(lowered.result.float_ops[0], "aten::add (add): left float, faster than int8 here");
  expect_within(lowered, {torch::randn({2, 3, 4, 4}), torch::randn({2, 3, 4, 4})}, 0);
}

// --- The table.

TEST(Int8RuleTableTest, HasARuleForEveryOpFamily) {
  const shrink::int8::RuleTable& table = shrink::int8::RuleTable::standard();
  for (const char* kind : {"aten::fake_quantize_per_tensor_affine",
                           "aten::fake_quantize_per_channel_affine",
                           "aten::conv2d",
                           "aten::linear",
                           "aten::add",
                           "aten::add_",
                           "aten::cat",
                           "aten::hardswish",
                           "aten::hardswish_",
                           "aten::max_pool2d",
                           "aten::avg_pool2d",
                           "aten::adaptive_avg_pool2d",
                           "aten::relu",
                           "aten::relu_",
                           "aten::hardtanh",
                           "aten::hardtanh_",
                           "aten::reshape",
                           "aten::view",
                           "aten::flatten",
                           "aten::contiguous",
                           "aten::transpose",
                           "aten::permute",
                           "aten::squeeze",
                           "aten::unsqueeze",
                           "aten::mean",
                           "aten::dropout",
                           "aten::dropout_",
                           "aten::batch_norm",
                           "aten::sigmoid",
                           "aten::sigmoid_",
                           "aten::hardsigmoid",
                           "aten::hardsigmoid_",
                           "aten::mul",
                           "aten::mul_",
                           "aten::silu",
                           "aten::silu_",
                           "aten::chunk",
                           "aten::split",
                           "aten::split_with_sizes"}) {
    EXPECT_NE(table.find(c10::Symbol::fromQualString(kind)), nullptr) << kind;
    EXPECT_NE(table.needs(c10::Symbol::fromQualString(kind)), nullptr) << kind;
  }
  EXPECT_EQ(table.kinds().size(), 39u);
  EXPECT_EQ(table.find(c10::Symbol::fromQualString("aten::gelu")), nullptr);
  EXPECT_EQ(table.needs(c10::Symbol::fromQualString("aten::gelu")), nullptr);
}

// What the placement reads: each family's rule says what it needs quantized around it.
TEST(Int8RuleTableTest, EachRuleSaysWhatItNeeds) {
  using shrink::int8::Needs;
  const shrink::int8::RuleTable& table = shrink::int8::RuleTable::standard();
  auto needs = [&](const char* kind) { return *table.needs(c10::Symbol::fromQualString(kind)); };
  EXPECT_EQ(needs("aten::conv2d").kind, Needs::kWeighted);
  EXPECT_TRUE(needs("aten::conv2d").fuses_batch_norm);
  EXPECT_TRUE(needs("aten::conv2d").fuses_relu);
  EXPECT_EQ(needs("aten::linear").kind, Needs::kWeighted);
  EXPECT_FALSE(needs("aten::linear").fuses_batch_norm);
  EXPECT_EQ(needs("aten::linear").min_weights, 16384);
  EXPECT_EQ(needs("aten::add_").kind, Needs::kOwnOutput);
  EXPECT_TRUE(needs("aten::add_").fuses_relu);
  EXPECT_EQ(needs("aten::add_").tensor_inputs, 2);
  EXPECT_EQ(needs("aten::batch_norm").kind, Needs::kOwnOutput);
  EXPECT_TRUE(needs("aten::batch_norm").fuses_relu);
  EXPECT_EQ(needs("aten::silu").tensor_inputs, 1);
  EXPECT_EQ(needs("aten::sigmoid").kind, Needs::kFixedOutput);
  EXPECT_EQ(needs("aten::chunk").kind, Needs::kSameGrid);
  EXPECT_EQ(needs("aten::max_pool2d").kind, Needs::kSameGrid);
  EXPECT_EQ(needs("aten::fake_quantize_per_tensor_affine").kind, Needs::kNothing);
}

TEST(Int8RuleTableTest, RejectsASecondRuleForAKind) {
  shrink::int8::RuleTable table;
  const shrink::int8::Rule rule = [](shrink::int8::Lowering&, torch::jit::Node*) {};
  table.add("aten::conv2d", rule, {shrink::int8::Needs::kWeighted});
  EXPECT_THROW(table.add("aten::conv2d", rule, {shrink::int8::Needs::kWeighted}), shrink::Error);
}

TEST_F(Int8RulesTest, OpWithNoRuleStaysFloatAndIsReported) {
  torch::jit::Module m("m");
  save_fake_quant(m, R"(
def forward(self, x):
    a = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
    return torch.tanh(torch.flatten(a, 1))
)");
  Lowered lowered = lower();
  EXPECT_EQ(count_kind(lowered.module, "aten::tanh"), 1);
  ASSERT_EQ(lowered.result.float_ops.size(), 1u);
  EXPECT_EQ(lowered.result.float_ops[0].rfind("aten::tanh", 0), 0u) << lowered.result.float_ops[0];
  EXPECT_NE(lowered.result.float_ops[0].find("no int8 lowering for it; runs in float"),
            std::string::npos)
      << lowered.result.float_ops[0];
  expect_within(lowered, {torch::randn({2, 3, 4, 4})}, 0);
}

}  // namespace
