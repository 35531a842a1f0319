// The host's checks of what plugins return, at the boundary, in one line naming plugin and site;
// the dry runs the plan check and `shrink check` use; the plugin's line recovered from a
// TorchScript traceback. Each trap is a plugin under tests/plugins/.
#include "plugin_fixtures.hpp"
#include "test_support.hpp"

#include <shrink/core/error.hpp>
#include <shrink/core/one_line_error.hpp>
#include <shrink/host/plugin_check.hpp>

#include <gtest/gtest.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/irparser.h>
#include <torch/script.h>
#include <torch/torch.h>

using shrink::test::error_of;
using shrink::test::registry_of;
using shrink::test::test_plugins;

namespace {

shrink::SiteSpec weight_site(const at::Tensor& weight) {
  return {"conv1", "Conv2d", "weight", shrink::QuantType::kWeight, {}, weight};
}

shrink::SiteSpec activation_site(const char* target, shrink::QuantType type) {
  return {"conv1", "Conv2d", target, type, {}, {}};
}

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

// A quantizer from the test plugin folder `folder`, with one weight site on `weight`.
struct OneSite {
  explicit OneSite(const std::string& folder, const shrink::Options& options = {})
      : registry(registry_of({test_plugins(folder)})),
        q(registry->require(registry->plugins().at(0)->algorithms.at(0).name), options) {
    site = q.add_site(weight_site(weight));
  }
  std::unique_ptr<shrink::PluginRegistry> registry;
  shrink::QuantizerInstance q;
  at::Tensor weight = torch::randn({8, 4, 3, 3});
  int site = 0;
};

}  // namespace

TEST(PluginCheckTest, WrongDtypeIsRefusedInOneLineNamingPluginSiteAndDtypes) {
  OneSite s("returns_float64");
  EXPECT_EQ(error_of([&] { s.q.quantize(s.site, s.weight); }),
            "plugin 'returns_float64' (quantizer 'returns_float64'), site conv1.weight: "
            "quantize_weight returned float64, expected float32 (its input's dtype)");
}

TEST(PluginCheckTest, WrongShapeIsRefusedNamingBothShapes) {
  OneSite s("returns_wrong_shape");
  EXPECT_EQ(error_of([&] { s.q.quantize(s.site, s.weight); }),
            "plugin 'returns_wrong_shape' (quantizer 'returns_wrong_shape'), site conv1.weight: "
            "quantize_weight returned shape [8, 36], expected [8, 4, 3, 3] (its input's)");
}

TEST(PluginCheckTest, NonFiniteValuesAreFoundWhenValueChecksAreOn) {
  OneSite s("returns_nan");
  // Off by default: no host sync per call in training.
  EXPECT_FALSE(s.q.check_values());
  EXPECT_EQ(error_of([&] { s.q.quantize(s.site, s.weight); }), "<no error>");
  s.q.set_check_values(true);
  EXPECT_EQ(error_of([&] { s.q.quantize(s.site, s.weight); }),
            "plugin 'returns_nan' (quantizer 'returns_nan'), site conv1.weight: quantize_weight "
            "returned 288 non-finite value(s) (NaN or inf) of 288");
  // `shrink run --check-plugins`: instances made afterwards start with the checks on.
  shrink::set_value_checks_by_default(true);
  OneSite checked("returns_nan");
  shrink::set_value_checks_by_default(false);
  EXPECT_TRUE(checked.q.check_values());
  // The dry run turns them on for itself, and back off.
  OneSite dry("returns_nan");
  EXPECT_HAS(error_of([&] { shrink::dry_run(dry.q); }), "non-finite");
  EXPECT_FALSE(dry.q.check_values());
}

TEST(PluginCheckTest, ThrowingPluginsLineSurvivesTheTorchScriptInterpreter) {
  auto registry = registry_of({test_plugins("throwing")});
  shrink::QuantizerInstance q(registry->require("throwing"), {});
  const int site = q.add_site(weight_site(torch::randn({2, 2})));
  const std::string line =
      "plugin 'throwing' (quantizer 'throwing'), site conv1.weight: quantize_weight failed: "
      "deliberate failure in quantize_weight";
  // Called by the TorchScript interpreter, as a model's forward calls it.
  auto graph = std::make_shared<torch::jit::Graph>();
  torch::jit::parseIR(R"IR(
graph(%x : Tensor, %quantizer : int, %site : int):
  %y : Tensor = shrink::quantize(%x, %quantizer, %site)
  return (%y))IR",
                      graph.get());
  torch::jit::GraphFunction forward("forward", graph, nullptr);
  try {
    forward({torch::randn({2, 2}), int64_t{q.id()}, int64_t{site}});
    FAIL() << "the plugin's exception must come through";
  } catch (const std::exception& wrapped) {
    EXPECT_NE(std::string(wrapped.what()), line) << "expected the interpreter to wrap it";
    EXPECT_EQ(shrink::error_line(wrapped), line);
    EXPECT_EQ(error_of([&] { shrink::rethrow_one_line(wrapped); }), line);
  }
  // Recovered once: an unrelated error is left as it is.
  const std::runtime_error other("something else");
  EXPECT_EQ(shrink::error_line(other), "something else");
  EXPECT_EQ(error_of([&] { shrink::rethrow_one_line(other); }), "<no error>");
}

TEST(PluginCheckTest, ExportSiteResultsAreCheckedAgainstTheContract) {
  for (const char* mistake : {"zero", "count", "int"}) {
    shrink::Options options;
    options.set("mistake", mistake);
    OneSite s("bad_export_scale", options);
    EXPECT_HAS(error_of([&] { s.q.export_site(s.site); }),
               "plugin 'bad_export_scale' (quantizer 'bad_export_scale'), site conv1.weight: "
               "export_site returned a ");
  }
  // No scale: the site stays in float. The contract's way, not an error.
  shrink::Options none;
  none.set("mistake", "none");
  OneSite s("bad_export_scale", none);
  EXPECT_FALSE(s.q.export_site(s.site).scale.defined());
  OneSite throws("throws_in_export");
  EXPECT_EQ(error_of([&] { throws.q.export_site(throws.site); }),
            "plugin 'throws_in_export' (quantizer 'throws_in_export'), site conv1.weight: "
            "export_site failed: no range recorded for weight");
}

TEST(PluginCheckTest, DryRunQuantizesWeightSitesAndExportsEverySite) {
  auto registry = registry_of({shrink::test::kPluginDir});
  shrink::QuantizerInstance q(registry->require("qat"), {});
  const at::Tensor weight = torch::randn({8, 4, 3, 3});
  const int w = q.add_site(weight_site(weight));
  const int out = q.add_site(activation_site("_output_0", shrink::QuantType::kOutput));
  const auto runs = shrink::dry_run(q);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_TRUE(runs[w].output.defined());
  EXPECT_TRUE(runs[w].input_grad.defined());
  EXPECT_FALSE(runs[out].output.defined());  // no input given
  ASSERT_TRUE(runs[w].exported && runs[w].calibration.scale.defined());
  EXPECT_GT(runs[w].calibration.scale.min().item<float>(), 0.0f);
  // An activation site that saw no data exports no scale (it stays float), rather than a zero one.
  EXPECT_TRUE(runs[out].exported);
  EXPECT_FALSE(runs[out].calibration.scale.defined());
  EXPECT_EQ(q.training(), true);  // modes restored
  EXPECT_FALSE(q.check_values());
}

TEST(PluginCheckTest, ParametersWithoutWeightDecayFormTheirOwnGroupAndGetGradients) {
  auto registry = registry_of({test_plugins("pact")});
  const auto& pact = registry->require("pact");
  EXPECT_EQ(pact.site_keys, std::vector<std::string>{"alpha_init"});
  shrink::QuantizerInstance q(pact, {});
  EXPECT_HAS(error_of([&] {
               q.add_site(weight_site(torch::randn({2, 2})));
             }),
             "pact quantizes activations");
  shrink::SiteSpec spec = activation_site("_output_0", shrink::QuantType::kOutput);
  spec.config.set("alpha_init", "2");
  const int site = q.add_site(spec);
  ASSERT_EQ(q.site_state(site).size(), 1u);
  EXPECT_FALSE(q.site_state(site)[0].weight_decay);
  EXPECT_EQ(q.parameters().size(), 1u);
  EXPECT_TRUE(q.parameters(/*with_weight_decay=*/true).empty());
  ASSERT_EQ(q.parameters(/*with_weight_decay=*/false).size(), 1u);
  EXPECT_FLOAT_EQ(q.parameters(false)[0].item<float>(), 2.0f);
  // Inputs above alpha give alpha a gradient: one per element clipped.
  const auto runs = shrink::dry_run(q, {{site, torch::tensor({-1.0f, 0.5f, 3.0f, 4.0f})}});
  ASSERT_EQ(runs[0].gradients.size(), 1u);
  EXPECT_EQ(runs[0].gradients[0].first, "alpha");
  EXPECT_FLOAT_EQ(runs[0].gradients[0].second.item<float>(), 2.0f);
  EXPECT_FALSE(q.parameters(false)[0].grad().defined());  // cleared after the dry run
  // The learnable_step plugin's parameter keeps weight decay (declared the ABI 1.4 way).
  auto learnable = registry_of({test_plugins("learnable")});
  shrink::QuantizerInstance l(learnable->require("learnable_step"), {});
  l.add_site(activation_site("_input_0", shrink::QuantType::kInput));
  EXPECT_EQ(l.parameters(true).size(), 1u);
  EXPECT_TRUE(l.parameters(false).empty());
}

TEST(PluginCheckTest, CPluginReadsBorrowedInputThroughTheConstAccessor) {
  auto registry = registry_of({test_plugins("c_clip")});
  shrink::QuantizerInstance q(registry->require("c_clip"), {});
  shrink::SiteSpec spec = weight_site(torch::randn({2}));
  spec.config.set("clip", "0.5");
  const int site = q.add_site(spec);
  const at::Tensor w = torch::tensor({-2.0f, 0.25f, 0.75f});
  EXPECT_TRUE(torch::equal(q.quantize(site, w), torch::tensor({-0.5f, 0.25f, 0.5f})));
  EXPECT_TRUE(torch::equal(w, torch::tensor({-2.0f, 0.25f, 0.75f})));  // the input untouched
}

TEST(PluginCheckTest, MaskerResultsAreCheckedNamingPluginAndOp) {
  auto registry = registry_of({test_plugins("nan_mask")});
  const shrink::WrapperSpec conv{"conv2", "Conv2d", {}, torch::randn({4, 2, 3, 3}), {}};
  shrink::MaskerInstance nan(registry->require("nan_mask"), {});
  EXPECT_EQ(error_of([&] { nan.calc_mask(0.5, conv, 0); }), "<no error>");  // values unchecked
  nan.set_check_values(true);
  EXPECT_EQ(error_of([&] { nan.calc_mask(0.5, conv, 0); }),
            "plugin 'nan_mask' (masker 'nan_mask'), op conv2: calc_mask returned 72 non-finite "
            "value(s) (NaN or inf) of 72");
  EXPECT_HAS(error_of([&] { nan.importance(conv, 0); }),
             "op conv2: importance returned 4 non-finite");
  for (const char* mistake : {"shape", "int"}) {
    shrink::Options options;
    options.set("mistake", mistake);
    shrink::MaskerInstance m(registry->require("nan_mask"), options);
    EXPECT_HAS(error_of([&] { m.calc_mask(0.5, conv, 0); }), "op conv2: calc_mask returned a");
  }
  shrink::MaskerInstance dry(registry->require("nan_mask"), {});
  EXPECT_HAS(error_of([&] { shrink::dry_run(dry, {conv}, 0.5); }), "non-finite");
}

TEST(PluginCheckTest, PrunersDeclareWhetherTheyRankInTraining) {
  auto registry = registry_of({shrink::test::kPluginDir, test_plugins("old_pruner")});
  EXPECT_TRUE(registry->require("taylor").ranks_in_training());
  EXPECT_FALSE(registry->require("l1_norm").ranks_in_training());
  EXPECT_FALSE(registry->require("slim").ranks_in_training());
  // Built against ABI 1.4 with one_shot == 0: read as taylor-like, as before.
  const auto& old = registry->require("old_ranker");
  EXPECT_EQ(old.plugin->abi_minor, 4);
  EXPECT_TRUE(old.ranks_in_training());
  EXPECT_HAS(old.capabilities_text(), "ranks-in-training");
}

TEST(PluginCheckTest, MaskerDryRunObservesFirstWhenThePrunerRanksInTraining) {
  auto registry = registry_of({shrink::test::kPluginDir});
  const std::vector<shrink::WrapperSpec> wrappers = {
      {"conv1", "Conv2d", {}, torch::randn({6, 1, 3, 3}), torch::randn({6})},
      {"conv2", "Conv2d", {}, torch::randn({8, 6, 3, 3}), torch::randn({8})}};
  for (const char* name : {"taylor", "l1_norm"}) {
    shrink::MaskerInstance m(registry->require(name), {});
    const auto runs = shrink::dry_run(m, wrappers, 0.5);
    ASSERT_EQ(runs.size(), 2u) << name;
    EXPECT_TRUE(runs[1].importance.defined()) << name;
    EXPECT_EQ(runs[1].masks.weight_mask.sizes(), wrappers[1].weight.sizes()) << name;
  }
}
