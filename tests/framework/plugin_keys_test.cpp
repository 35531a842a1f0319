// check_plugin_keys: a stage's config_list keys against its algorithm's declared site keys.
#include "plugin_fixtures.hpp"

#include <shrink/config/config_list.hpp>
#include <shrink/core/error.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/run/plugin_keys.hpp>

#include <gtest/gtest.h>

using shrink::test::registry_of;
using shrink::test::test_plugins;

namespace {

// The message check_plugin_keys throws for `yaml` against `algorithm`, or "<no error>".
std::string key_error_of(const std::string& yaml, const shrink::AlgorithmInfo& algorithm,
                         const std::string& stage = "compress[0]") {
  try {
    shrink::check_plugin_keys(shrink::ConfigList::parse_text(yaml, "exp.yaml"), algorithm, stage);
  } catch (const shrink::Error& e) {
    return e.what();
  }
  return "<no error>";
}

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

}  // namespace

TEST(PluginKeysTest, BuiltInQuantizersDeclareTheirOwnKeys) {
  auto registry = registry_of({shrink::test::kPluginDir});
  const auto& qat = registry->require("qat");
  const auto& ptq = registry->require("ptq");
  EXPECT_EQ(qat.site_keys, std::vector<std::string>{"quant_start_step"});
  EXPECT_EQ(ptq.site_keys, std::vector<std::string>{"range_estimator"});
  const std::string qat_yaml = "- op_names: [conv1]\n  quant_start_step: 100\n";
  EXPECT_EQ(key_error_of(qat_yaml, qat), "<no error>");
  EXPECT_EQ(key_error_of("- op_names: [conv1]\n  range_estimator: mse\n", ptq), "<no error>");
  // Each key belongs to its own algorithm only.
  EXPECT_EQ(
      key_error_of(qat_yaml, ptq),
      "exp.yaml:2:3: compress[0].config_list[0]: unknown key 'quant_start_step' (allowed: "
      "op_names, op_names_re, op_types, exclude_op_names, exclude_op_names_re, "
      "exclude_op_types, exclude, target_names, target_settings, quant_types, quant_bits, "
      "quant_dtype, quant_scheme, granularity, preset, sparse_ratio, sparsity, sparsity_per_layer, "
      "total_sparsity, max_sparsity_per_layer, and 'ptq' declares: range_estimator)");
}

TEST(PluginKeysTest, UnknownKeyNamesFileLineColumnEntryAndBothLists) {
  auto registry = registry_of({shrink::test::kPluginDir});
  const auto& l1 = registry->require("l1_norm");
  const std::string yaml =
      "- op_types: [Conv2d]\n  sparse_ratio: 0.5\n- op_names: [fc1]\n  sparse: 0.5\n";
  const std::string error = key_error_of(yaml, l1, "compress[2]");
  EXPECT_HAS(error,
             "exp.yaml:4:3: compress[2].config_list[1]: unknown key 'sparse' (allowed: op_names");
  EXPECT_HAS(error, "; 'l1_norm' declares no keys of its own)");
  // Without a stage name, the entry alone; a key in target_settings is found where it is written.
  EXPECT_HAS(key_error_of("- op_names: [conv1]\n  target_settings: {weight: {quant_bitz: 4}}\n",
                          registry->require("qat"), ""),
             "exp.yaml:2:30: config_list[0]: unknown key 'quant_bitz'");
}

TEST(PluginKeysTest, DeclaredKeysReachTheSiteConfigOfACPlugin) {
  auto registry = registry_of({test_plugins("c_clip")});
  const auto& clip = registry->require("c_clip");
  EXPECT_EQ(clip.site_keys, std::vector<std::string>{"clip"});
  EXPECT_EQ(key_error_of("- op_names: [conv1]\n  clip: 0.5\n", clip), "<no error>");
  EXPECT_HAS(key_error_of("- op_names: [conv1]\n  clips: 0.5\n", clip),
             "and 'c_clip' declares: clip)");
}

TEST(PluginKeysTest, PruningPlansLeaveDeclaredKeysToTheStage) {
  const shrink::Model model =
      shrink::Model::load(std::string(shrink::test::kTestModelDir) + "/mnist.pt");
  const auto list = shrink::ConfigList::parse_text(
      "- op_names: [conv1]\n  sparse_ratio: 0.5\n  criterion_scale: 2\n", "exp.yaml");
  EXPECT_EQ(shrink::plan_pruning(list, model.ops()).size(), 1u);
  // Framework keys of the other kind are still refused by the plan.
  EXPECT_THROW(shrink::plan_pruning(
                   shrink::ConfigList::parse_text(
                       "- op_names: [conv1]\n  sparse_ratio: 0.5\n  quant_bits: 8\n", "exp.yaml"),
                   model.ops()),
               shrink::Error);
}
