#include "plugin_fixtures.hpp"

#include <shrink/core/error.hpp>
#include <shrink/host/masker_instance.hpp>

#include <gtest/gtest.h>
#include <torch/torch.h>

using shrink::test::registry_of;
using shrink::test::test_plugins;

TEST(MaskerTest, RejectsSparsityOutsideZeroToOne) {
  auto registry = registry_of({test_plugins("seed_examples")});
  shrink::MaskerInstance m(registry->require("my_masker"), {});
  shrink::WrapperSpec wrapper{"conv1", "Conv2d", {}, torch::randn({4, 2, 3, 3}), {}};
  for (double bad : {-0.1, 1.0, 1.5}) {
    try {
      m.calc_mask(bad, wrapper, 0);
      FAIL() << "sparsity " << bad << " must be rejected";
    } catch (const shrink::Error& e) {
      EXPECT_NE(std::string(e.what()).find("conv1"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("[0, 1)"), std::string::npos) << e.what();
    }
  }
}

TEST(MaskerTest, QuantizerIsNotAMasker) {
  auto registry = registry_of({test_plugins("seed_examples")});
  EXPECT_THROW(shrink::MaskerInstance(registry->require("your_quantizer"), {}), shrink::Error);
}

TEST(MaskerTest, PlainMaskerIsDrivenOneShotWithoutHooks) {
  auto registry = registry_of({test_plugins("seed_examples")});
  const shrink::AlgorithmInfo& masker = registry->require("my_masker");
  EXPECT_TRUE(masker.is_masker());
  EXPECT_FALSE(masker.is_pruner());
  shrink::MaskerInstance m(masker, {});
  EXPECT_FALSE(m.ranks_in_training());
  m.update_epoch(0);
  m.step();
}
