// The int8_onednn preset's placement: the sites the int8 lowering consumes, on models as users
// write them (the quick-start net, torchvision's resnet18, and zoo_small: SiLU, squeeze-excitation,
// a densenet block grown by append, a shufflenet unit, hardsigmoid, mean pooling).
#include "test_paths.hpp"

#include <shrink/config/config_list.hpp>
#include <shrink/export/int8_placement.hpp>
#include <shrink/graph/model.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

namespace {

const shrink::Model& model(const std::string& name) {
  static std::map<std::string, shrink::Model> models;
  auto it = models.find(name);
  if (it == models.end()) {
    it = models
             .emplace(name, shrink::Model::load(std::string(shrink::test::kTestModelDir) + "/" +
                                                name + ".pt"))
             .first;
  }
  return it->second;
}

shrink::Int8Placement place(const std::string& name, const std::string& entry = "") {
  const shrink::ConfigList list =
      shrink::ConfigList::parse_text("- preset: int8_onednn\n" + entry, "exp.yaml");
  return shrink::place_int8_sites(model(name), list, list.entries[0]);
}

std::vector<std::string> keys(const shrink::Int8Placement& p) {
  std::vector<std::string> out;
  for (const auto& s : p.sites) out.push_back(s.op_name + "." + s.target);
  return out;
}

const shrink::PlacedSite& site(const shrink::Int8Placement& p, const std::string& key) {
  for (const auto& s : p.sites) {
    if (s.op_name + "." + s.target == key) return s;
  }
  throw std::runtime_error("no site " + key);
}

bool has_note(const shrink::Int8Placement& p, const std::string& text) {
  return std::any_of(p.notes.begin(), p.notes.end(),
                     [&](const std::string& n) { return n.find(text) != std::string::npos; });
}

// The quick start's hand-written config_list, placed: each convolution's and linear's input (where
// it is not int8 already), weight, and output after its BatchNorm and ReLU6. fc2 is too small to
// gain from int8.
TEST(Int8PlacementTest, TheQuickStartNetGetsTheSitesItsInt8KernelsRead) {
  const shrink::Int8Placement p = place("mnist");
  EXPECT_EQ(keys(p), (std::vector<std::string>{"conv1.weight", "conv1._input_0", "relu1._output_0",
                                               "conv2.weight", "relu2._output_0", "fc1.weight",
                                               "relu3._output_0"}));
  EXPECT_EQ(p.weighted_ops, 3);
  EXPECT_EQ(site(p, "relu1._output_0").why,
            "the output of int8 aten::conv2d (conv1) + batch_norm + hardtanh");
  EXPECT_EQ(site(p, "conv1._input_0").why, "an input of int8 aten::conv2d (conv1)");
  EXPECT_TRUE(has_note(p, "aten::linear (fc2) stays float: 5000 weights, fewer than 16384"));
}

// torchvision's BasicBlock: `out += identity; out = self.relu(out)`, the ReLU module its first
// ReLU too: the add fuses that ReLU, and one output site serves both calls.
TEST(Int8PlacementTest, ResidualAddsFuseTheBlocksRelu) {
  const shrink::Int8Placement p = place("resnet18");
  EXPECT_EQ(p.weighted_ops, 20);  // every convolution; fc (5120 weights) stays float
  EXPECT_EQ(p.other_ops, 8);      // the residual adds
  EXPECT_EQ(site(p, "layer1.0.bn2._output_0").why,
            "the output of int8 aten::conv2d (layer1.0.conv2) + batch_norm");
  EXPECT_EQ(site(p, "layer1.0.relu._output_0").why,
            "the output of int8 aten::conv2d (layer1.0.conv1) + batch_norm + relu_");
  EXPECT_EQ(site(p, "layer2.0.downsample.1._output_0").why,
            "the output of int8 aten::conv2d (layer2.0.downsample.0) + batch_norm");
  // One input site, the model's input: each block reads the int8 output of the one before.
  for (const auto& s : p.sites) {
    if (s.op_name != "conv1") EXPECT_NE(s.target, "_input_0") << s.op_name;
  }
  EXPECT_EQ(site(p, "conv1._input_0").why, "an input of int8 aten::conv2d (conv1)");
  EXPECT_EQ(site(p, "conv1.weight").why, "the weight of int8 aten::conv2d (conv1)");
}

TEST(Int8PlacementTest, RealArchitecturesPatternsAllGetSites) {
  const shrink::Int8Placement p = place("zoo_small");
  EXPECT_EQ(p.weighted_ops, 8);
  EXPECT_EQ(p.other_ops, 11);
  // SiLU: its own output site; the squeeze-excitation's mul too; sigmoid needs none.
  EXPECT_EQ(site(p, "stem_bn._output_0").why,
            "the output of int8 aten::conv2d (stem) + batch_norm");
  EXPECT_EQ(site(p, "stem_act._output_0").why, "the output of int8 aten::silu_ (stem_act)");
  EXPECT_EQ(site(p, "se.activation._output_0").why,
            "the output of int8 aten::silu (se.activation)");
  EXPECT_EQ(site(p, "se.mul._output_0").why, "the output of int8 aten::mul (se)");
  // densenet: the cat of an appended list, then BatchNorm + ReLU that no convolution folds.
  EXPECT_EQ(site(p, "dense2.cat._output_0").why, "the output of int8 aten::cat (dense2)");
  EXPECT_EQ(site(p, "dense2.relu._output_0").why,
            "the output of int8 aten::batch_norm (dense2.norm) + relu_");
  // shufflenet: chunk's pieces stay int8; the add in the branch fuses the functional relu.
  EXPECT_EQ(site(p, "relu._output_0").why, "the output of int8 aten::add (add) + relu");
  EXPECT_EQ(site(p, "cat_1._output_0").why, "the output of int8 aten::cat (cat_1)");
  // hardsigmoid gates on its fixed grid: the mul after it has the only site.
  EXPECT_EQ(site(p, "mul._output_0").why, "the output of int8 aten::mul (mul)");
  EXPECT_EQ(std::count_if(p.sites.begin(), p.sites.end(),
                          [](const auto& s) { return s.target == "_input_0"; }),
            1);  // the model's input, read by the stem
  EXPECT_TRUE(has_note(p, "aten::linear (fc) stays float: 640 weights"));
}

// A cat's inputs and output share one range, group after group, the first site placed owning it:
// LibTorch's int8 cat then copies bytes.
TEST(Int8PlacementTest, CatInputsAndOutputShareTheFirstSitesRange) {
  const shrink::Int8Placement p = place("zoo_small");
  for (const char* key :
       {"dense1.cat._output_0", "dense1.conv._output_0", "dense2.cat._output_0",
        "dense2.conv._output_0", "cat._output_0", "relu._output_0", "cat_1._output_0"}) {
    EXPECT_EQ(site(p, key).range_of, "se.mul._output_0") << key;
  }
  EXPECT_EQ(site(p, "se.mul._output_0").range_of, "");
  EXPECT_EQ(site(p, "stem_act._output_0").range_of, "");  // not read by a cat
}

TEST(Int8PlacementTest, ExcludedOpsStayFloatAndTheirNeighboursAdapt) {
  const shrink::Int8Placement p = place("zoo_small", "  exclude_op_names: [dense1.conv]\n");
  const std::vector<std::string> k = keys(p);
  EXPECT_EQ(std::count(k.begin(), k.end(), "dense1.conv.weight"), 0);
  EXPECT_EQ(p.weighted_ops, 7);
  EXPECT_TRUE(has_note(p, "aten::conv2d (dense1.conv) stays float: excluded"));
  // dense2's cat still runs int8: dense1.conv's float output gets a site of its own.
  EXPECT_EQ(site(p, "dense1.conv._output_0").why, "an input of int8 aten::cat (dense2)");
}

TEST(Int8PlacementTest, PlacementLeavesTheModelAsItWas) {
  const std::vector<shrink::OpInstance> before = model("zoo_small").ops();
  place("zoo_small");
  place("zoo_small");  // the same sites again
  EXPECT_EQ(keys(place("zoo_small")), keys(place("zoo_small")));
  EXPECT_EQ(model("zoo_small").ops().size(), before.size());
}

}  // namespace
