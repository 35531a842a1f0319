#include "test_paths.hpp"

#include <shrink/config/config_list.hpp>
#include <shrink/core/error.hpp>
#include <shrink/graph/model.hpp>

#include <gtest/gtest.h>

namespace {

const std::vector<shrink::OpInstance>& mnist_ops() {
  static shrink::Model model =
      shrink::Model::load(std::string(shrink::test::kTestModelDir) + "/mnist.pt");
  return model.ops();
}

std::vector<shrink::PlannedSite> plan(const std::string& yaml) {
  return shrink::plan_sites(shrink::ConfigList::parse_text(yaml, "exp.yaml"), mnist_ops());
}

std::vector<std::string> site_names(const std::vector<shrink::PlannedSite>& sites) {
  std::vector<std::string> names;
  for (const auto& s : sites) names.push_back(s.op_name + "." + s.target);
  return names;
}

const std::string& setting(const shrink::PlannedSite& site, const std::string& key) {
  static const std::string missing = "<missing>";
  const std::string* v = site.config.find(key);
  return v ? *v : missing;
}

std::string error_of(const std::string& yaml) {
  try {
    plan(yaml);
  } catch (const shrink::Error& e) {
    return e.what();
  }
  return "<no error>";
}

// --- preset: the sites a backend consumes, placed around the hand-written entries.

shrink::ConfigList parse(const std::string& yaml) {
  return shrink::ConfigList::parse_text(yaml, "exp.yaml");
}

TEST(ConfigListPresetTest, APresetEntrySelectsNothingItselfAndPlanSitesLeavesItOut) {
  const shrink::ConfigList list = parse("- preset: int8_onednn\n  exclude_op_names: [fc2]\n");
  ASSERT_EQ(list.entries.size(), 1u);
  EXPECT_EQ(list.entries[0].preset, "int8_onednn");
  EXPECT_TRUE(shrink::plan_sites(list, mnist_ops()).empty());
}

TEST(ConfigListPresetTest, BadPresetsAreOneLineNamingTheKey) {
  EXPECT_NE(error_of("- preset: int4_magic\n")
                .find("exp.yaml:1:3: preset: expected one of "
                      "int8_onednn"),
            std::string::npos)
      << error_of("- preset: int4_magic\n");
  EXPECT_NE(error_of("- preset: int8_onednn\n  op_names: [conv1]\n")
                .find("op_names beside preset: int8_onednn places its own sites"),
            std::string::npos)
      << error_of("- preset: int8_onednn\n  op_names: [conv1]\n");
  EXPECT_NE(error_of("- preset: int8_onednn\n  target_names: [weight]\n")
                .find("target_names beside preset"),
            std::string::npos);
}

TEST(ConfigListPresetTest, ExclusionsAreThePresetsOwnAndEveryExcludeEntry) {
  const shrink::ConfigList list = parse(
      "- preset: int8_onednn\n  exclude_op_types: [Linear]\n- op_names: [conv2]\n  exclude: "
      "true\n");
  auto op = [](const std::string& name) {
    for (const auto& o : mnist_ops()) {
      if (o.name == name) return o;
    }
    throw std::runtime_error(name);
  };
  const shrink::ConfigEntry& preset = list.entries[0];
  EXPECT_TRUE(shrink::preset_excludes(list, preset, op("fc1")));
  EXPECT_TRUE(shrink::preset_excludes(list, preset, op("conv2")));
  EXPECT_FALSE(shrink::preset_excludes(list, preset, op("conv1")));
}

TEST(ConfigListPresetTest, PresetSitesTakeBackendDefaultsUnderTheEntrysKeys) {
  const shrink::ConfigList list = parse(
      "- preset: int8_onednn\n  range_estimator: percentile\n  target_settings:\n    "
      "_output_: {quant_scheme: symmetric}\n");
  std::vector<shrink::PlannedSite> sites;
  shrink::add_preset_sites(list.entries[0],
                           {{"conv1", "_input_0", "an input", ""},
                            {"conv1", "weight", "the weight", ""},
                            {"relu1", "_output_0", "the output", ""}},
                           mnist_ops(), sites);
  ASSERT_EQ(site_names(sites),
            (std::vector<std::string>{"conv1._input_0", "conv1.weight", "relu1._output_0"}));
  EXPECT_EQ(setting(sites[0], "quant_dtype"), "int8");
  EXPECT_EQ(setting(sites[0], "quant_scheme"), "affine");
  EXPECT_EQ(setting(sites[0], "granularity"), "default");
  EXPECT_EQ(setting(sites[1], "quant_scheme"), "symmetric");
  EXPECT_EQ(setting(sites[1], "granularity"), "per_channel");
  EXPECT_EQ(setting(sites[2], "quant_scheme"), "symmetric");  // target_settings._output_
  EXPECT_EQ(setting(sites[2], "range_estimator"), "percentile");
  EXPECT_EQ(sites[0].why, "an input");
  EXPECT_EQ(sites[0].quant_type, shrink::QuantType::kInput);
  EXPECT_EQ(sites[2].quant_type, shrink::QuantType::kOutput);
}

TEST(ConfigListPresetTest, HandWrittenEntriesWinWhereTheySpeak) {
  const shrink::ConfigList list = parse(
      "- preset: int8_onednn\n- op_names: [conv1]\n  target_names: [weight]\n  "
      "quant_bits: 8\n  quant_scheme: affine\n");
  std::vector<shrink::PlannedSite> sites = shrink::plan_sites(list, mnist_ops());
  shrink::add_preset_sites(
      list.entries[0],
      {{"conv1", "weight", "the weight", ""}, {"relu1", "_output_0", "the output", ""}},
      mnist_ops(), sites);
  ASSERT_EQ(site_names(sites), (std::vector<std::string>{"conv1.weight", "relu1._output_0"}));
  EXPECT_EQ(setting(sites[0], "quant_scheme"), "affine");  // the hand-written entry's
  EXPECT_TRUE(sites[0].why.empty());
  EXPECT_EQ(setting(sites[1], "quant_scheme"), "affine");
  EXPECT_EQ(sites[1].why, "the output");
}

TEST(ConfigListPresetTest, ARangeIsSharedOnlyWithThePresetsOwnSiteOfTheSameSettings) {
  const shrink::ConfigList list = parse(
      "- preset: int8_onednn\n  target_settings:\n    _input_: {quant_scheme: symmetric}\n"
      "- op_names: [relu2]\n  target_names: [_output_]\n");
  std::vector<shrink::PlannedSite> sites = shrink::plan_sites(list, mnist_ops());
  shrink::add_preset_sites(list.entries[0],
                           {{"relu1", "_output_0", "", ""},
                            {"conv2", "_input_0", "", "relu1._output_0"},  // other settings
                            {"max_pool2", "_output_0", "", "relu1._output_0"},
                            {"fc1", "_input_0", "", "relu2._output_0"}},  // hand-written owner
                           mnist_ops(), sites);
  ASSERT_EQ(site_names(sites),
            (std::vector<std::string>{"relu2._output_0", "relu1._output_0", "conv2._input_0",
                                      "max_pool2._output_0", "fc1._input_0"}));
  EXPECT_EQ(sites[2].range_of, "");
  EXPECT_EQ(sites[3].range_of, "relu1._output_0");
  EXPECT_EQ(sites[4].range_of, "");
}

}  // namespace

TEST(ConfigListTest, SeedQuickStartConfig) {
  auto sites = plan(R"(
- op_names: [conv1, conv2, fc1, fc2]
  target_names: [_input_, weight, _output_]
  quant_dtype: int8
  quant_scheme: affine
  granularity: default
- op_names: [relu1, relu2, relu3]
  target_names: [_output_]
  quant_dtype: int8
  quant_scheme: affine
  granularity: default
)");
  using V = std::vector<std::string>;
  EXPECT_EQ(
      site_names(sites),
      (V{"conv1._input_0", "conv1.weight", "conv1._output_0", "conv2._input_0", "conv2.weight",
         "conv2._output_0", "fc1._input_0", "fc1.weight", "fc1._output_0", "fc2._input_0",
         "fc2.weight", "fc2._output_0", "relu1._output_0", "relu2._output_0", "relu3._output_0"}));
  EXPECT_EQ(sites[1].quant_type, shrink::QuantType::kWeight);
  EXPECT_EQ(sites[0].quant_type, shrink::QuantType::kInput);
  EXPECT_EQ(sites[2].quant_type, shrink::QuantType::kOutput);
  EXPECT_EQ(setting(sites[0], "quant_dtype"), "int8");
  EXPECT_EQ(setting(sites[0], "quant_bits"), "8");
  EXPECT_EQ(setting(sites[0], "quant_scheme"), "affine");
  EXPECT_EQ(setting(sites[14].op_type == "ReLU6" ? sites[14] : sites[0], "granularity"), "default");
}

TEST(ConfigListTest, Nni2SpellingIsTranslated) {
  auto sites = plan(R"(
- op_types: [default]
  quant_types: [weight, input]
  quant_bits: {weight: 4, input: 8}
  quant_scheme: per_channel_symmetric
  quant_dtype: uint
  quant_start_step: 100
)");
  ASSERT_EQ(sites.size(), 8u);  // conv1, conv2, fc1, fc2 x (weight, input)
  for (const auto& s : sites) {
    const bool weight = s.target == "weight";
    EXPECT_EQ(setting(s, "quant_bits"), weight ? "4" : "8") << s.op_name << "." << s.target;
    EXPECT_EQ(setting(s, "quant_dtype"), weight ? "uint4" : "uint8");
    EXPECT_EQ(setting(s, "quant_scheme"), "symmetric");
    EXPECT_EQ(setting(s, "granularity"), "per_channel");
    EXPECT_EQ(setting(s, "quant_start_step"), "100");
  }
}

TEST(ConfigListTest, FirstMatchingEntryWinsAndExcludeIsGlobal) {
  auto sites = plan(R"(
- op_names: [fc2]
  target_names: [weight]
  quant_dtype: int4
- op_types: [Linear, Conv2d]
  target_names: [weight]
  quant_dtype: int8
- op_names: [conv2]
  exclude: true
)");
  using V = std::vector<std::string>;
  EXPECT_EQ(site_names(sites), (V{"fc2.weight", "conv1.weight", "fc1.weight"}));
  EXPECT_EQ(setting(sites[0], "quant_bits"), "4");  // the first entry configured fc2.weight
  EXPECT_EQ(setting(sites[2], "quant_bits"), "8");
}

TEST(ConfigListTest, SelectionIntersectsNamesAndTypesMinusExclusions) {
  auto sites = plan(R"(
- op_names_re: ['(conv|fc)[0-9]']
  op_types: [Linear]
  exclude_op_names: [fc1]
  target_names: [weight]
)");
  using V = std::vector<std::string>;
  EXPECT_EQ(site_names(sites), (V{"fc2.weight"}));
}

TEST(ConfigListTest, TargetSettingsOverrideShortcuts) {
  auto sites = plan(R"(
- op_names: [fc1]
  target_names: [weight, _output_]
  quant_dtype: int8
  target_settings:
    weight: {quant_dtype: int4, quant_scheme: symmetric}
)");
  ASSERT_EQ(sites.size(), 2u);
  EXPECT_EQ(setting(sites[0], "quant_dtype"), "int4");
  EXPECT_EQ(setting(sites[0], "quant_scheme"), "symmetric");
  EXPECT_EQ(setting(sites[1], "quant_dtype"), "int8");
  EXPECT_EQ(setting(sites[1], "quant_scheme"), "default");  // the algorithm's own default
}

TEST(ConfigListTest, DefaultTargetsDependOnTheOp) {
  auto sites = plan("- op_names: [conv1, relu1]\n");
  using V = std::vector<std::string>;
  EXPECT_EQ(site_names(sites),
            (V{"conv1._input_0", "conv1.weight", "conv1._output_0", "relu1._output_0"}));
}

TEST(ConfigListTest, KeysTheFrameworkDoesNotKnowAreKeptForTheStagesAlgorithm) {
  // A key neither the framework nor NNI defines may be the stage's algorithm's (qat's
  // quant_start_step): the config layer keeps it, with where it was written, and the stage check
  // (check_plugin_keys, tests/framework/plugin_keys_test.cpp) accepts or refuses it.
  const auto list = shrink::ConfigList::parse_text(
      "- op_names: [conv1]\n  quant_bitz: 8\n  target_settings: {weight: {alpha_init: 2}}\n",
      "exp.yaml");
  using P = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(list.entries[0].plugin_keys,
            (P{{"quant_bitz", "exp.yaml:2:3"}, {"alpha_init", "exp.yaml:3:30"}}));
  EXPECT_EQ(setting(plan("- op_names: [conv1]\n  quant_start_step: 3\n")[0], "quant_start_step"),
            "3");
}

TEST(ConfigListTest, ErrorsNameTheFileLineKeyAndWhatIsAllowed) {
  EXPECT_NE(
      error_of("- op_names: [conv9]\n").find("exp.yaml:1:3: op_names: the model has no op 'conv9'"),
      std::string::npos)
      << error_of("- op_names: [conv9]\n");
  EXPECT_NE(error_of("- op_types: [LSTM]\n").find("selects no op of the model"), std::string::npos);
  EXPECT_NE(error_of("- op_names: [relu1]\n  target_names: [weight]\n")
                .find("op 'relu1' (ReLU6) has no target 'weight'"),
            std::string::npos);
  EXPECT_NE(error_of("- op_names: [conv1]\n  quant_scheme: fancy\n")
                .find("quant_scheme is 'fancy', expected affine, symmetric or default"),
            std::string::npos);
  EXPECT_NE(error_of("- op_names: [conv1]\n  quant_dtype: int8\n  quant_bits: 4\n")
                .find("quant_dtype int8 and quant_bits 4 disagree"),
            std::string::npos);
  EXPECT_NE(
      error_of("- op_names: [conv1]\n  quant_bits: 40\n").find("expected an integer from 1 to 32"),
      std::string::npos);
  EXPECT_NE(error_of("- op_names: conv1\n").find("op_names: expected a list of strings"),
            std::string::npos);
  EXPECT_NE(error_of("- quant_bits: 8\n").find("give op_names, op_names_re or op_types"),
            std::string::npos);
  EXPECT_NE(error_of("- op_names: [conv1\n").find("exp.yaml:2:1: malformed YAML"),
            std::string::npos)
      << error_of("- op_names: [conv1\n");
  EXPECT_NE(error_of("- op_names: [conv1]\n  target_names: [_middle_]\n")
                .find("target '_middle_' is not one of _input_, weight, bias, _output_"),
            std::string::npos);
}
