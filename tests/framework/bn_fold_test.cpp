// BatchNorm folding (shrink export --fold-bn, and the arithmetic the int8 export uses): the folded
// model computes what the unfolded one does, within float tolerance, with no BatchNorm left.
#include "test_paths.hpp"

#include <shrink/core/error.hpp>
#include <shrink/export/int8_export.hpp>

#include <gtest/gtest.h>
#include <torch/script.h>

#include <filesystem>

namespace {

namespace fs = std::filesystem;

std::string model_path(const std::string& name) {
  return std::string(shrink::test::kTestModelDir) + "/" + name + ".pt";
}

int count_kind(const torch::jit::Block* block, const char* kind) {
  int n = 0;
  for (const torch::jit::Node* node : block->nodes()) {
    if (node->kind() == c10::Symbol::fromQualString(kind)) ++n;
    for (const torch::jit::Block* b : node->blocks()) n += count_kind(b, kind);
  }
  return n;
}

// The fixture with its BatchNorms given statistics and affine parameters far from the identity
// (the fixtures' are untrained: folding them would change almost nothing), saved to `out`.
// Returns how many BatchNorm2d modules it has.
int with_trained_batchnorms(const std::string& name, const std::string& out) {
  torch::jit::Module m = torch::jit::load(model_path(name));
  torch::manual_seed(3);
  int count = 0;
  for (const auto& sub : m.named_modules()) {
    const auto type = sub.value.type()->name();
    if (!type || type->name() != "BatchNorm2d") continue;
    ++count;
    torch::NoGradGuard no_grad;
    auto set = [&](const char* attr, const at::Tensor& value) {
      sub.value.attr(attr).toTensor().copy_(value);
    };
    const int64_t c = sub.value.attr("running_mean").toTensor().size(0);
    set("running_mean", torch::randn({c}) * 0.5);
    set("running_var", torch::rand({c}) * 2 + 0.1);
    set("weight", torch::randn({c}));
    set("bias", torch::randn({c}) * 0.3);
  }
  m.save(out);
  return count;
}

class BatchNormFoldTest : public ::testing::TestWithParam<const char*> {};

TEST_P(BatchNormFoldTest, FoldedModelMatchesUnfoldedWithinFloatTolerance) {
  const std::string name = GetParam();
  const fs::path dir = fs::temp_directory_path() / ("shrink_bn_fold_" + name);
  fs::create_directories(dir);
  const std::string original = (dir / "model.pt").string(),
                    folded_file = (dir / "folded.pt").string();
  const int batchnorms = with_trained_batchnorms(name, original);
  ASSERT_GT(batchnorms, 0) << name << " has no BatchNorm2d to fold";

  const int folded = shrink::fold_batchnorm(original, folded_file);
  // Every BatchNorm of these models follows a convolution.
  EXPECT_EQ(folded, batchnorms);
  EXPECT_FALSE(fs::exists(folded_file + ".partial"));

  torch::jit::Module a = torch::jit::load(original), b = torch::jit::load(folded_file);
  a.eval();
  b.eval();
  EXPECT_EQ(count_kind(b.get_method("forward").graph()->block(), "aten::batch_norm"), 0);
  EXPECT_GT(count_kind(b.get_method("forward").graph()->block(), "aten::conv2d"), 0);

  torch::NoGradGuard no_grad;
  // The Fashion-MNIST nets take 1x28x28; torchvision's, 3x32x32.
  const bool fashion = name == "mnist" || name == "resnet_small";
  const at::Tensor x = torch::randn(fashion ? std::vector<int64_t>{8, 1, 28, 28}
                                            : std::vector<int64_t>{8, 3, 32, 32});
  const at::Tensor ya = a.forward({x}).toTensor(), yb = b.forward({x}).toTensor();
  const double scale = ya.abs().max().item<double>();
  ASSERT_GT(scale, 0);
  const double max_rel = (ya - yb).abs().max().item<double>() / scale;
  EXPECT_LT(max_rel, 1e-4) << name;
  // The BatchNorms changed the output: the comparison would catch a fold that dropped them.
  torch::jit::Module untrained = torch::jit::load(model_path(name));
  untrained.eval();
  const at::Tensor unfolded_random = untrained.forward({x}).toTensor();
  EXPECT_GT((ya - unfolded_random).abs().max().item<double>() / scale, 1e-2);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Models, BatchNormFoldTest,
                         ::testing::Values("mnist", "resnet_small", "resnet18", "mobilenet_v2"));

TEST(BatchNormFoldErrors, MissingModelNamesTheFile) {
  try {
    shrink::fold_batchnorm("/nowhere/model.pt",
                           (fs::temp_directory_path() / "shrink_folded.pt").string());
    FAIL() << "no error";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nowhere/model.pt"), std::string::npos) << e.what();
  }
}

}  // namespace
