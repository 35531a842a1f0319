#include "plugin_fixtures.hpp"

#include <shrink/core/error.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/host/shared_library.hpp>

#include <elf.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using shrink::test::registry_of;
using shrink::test::test_plugins;

namespace {

// A fresh temporary folder, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("shrink_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  fs::path path_;
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST(PluginRegistryTest, LoadsPluginWrittenInC) {
  auto registry = registry_of({test_plugins("c_round")});
  ASSERT_TRUE(registry->failures().empty()) << registry->failures()[0].message;
  ASSERT_EQ(registry->plugins().size(), 1u);
  const auto& plugin = *registry->plugins()[0];
  EXPECT_EQ(plugin.name, "c_round");
  EXPECT_EQ(plugin.build_tag, "c");
  const shrink::AlgorithmInfo& alg = registry->require("c_round");
  EXPECT_TRUE(alg.is_quantizer());
  EXPECT_EQ(alg.supported_op_types, "Conv2d,Linear");
  EXPECT_EQ(alg.capabilities_text(), "calibration");
}

TEST(PluginRegistryTest, RefusesDifferentAbiMajorNamingFileAndBothVersions) {
  auto registry = registry_of({test_plugins("wrong_abi")});
  EXPECT_TRUE(registry->plugins().empty());
  ASSERT_EQ(registry->failures().size(), 1u);
  const auto& failure = registry->failures()[0];
  EXPECT_TRUE(contains(failure.file, "wrong_abi.so"));
  EXPECT_TRUE(contains(failure.message, "plugin ABI 2.0")) << failure.message;
  EXPECT_TRUE(contains(failure.message, "speaks ABI 1." + std::to_string(SHRINK_ABI_VERSION_MINOR)))
      << failure.message;
  EXPECT_TRUE(contains(failure.message, "rebuild")) << failure.message;
}

TEST(PluginRegistryTest, LoadsOlderMinorWithSmallerStructsAndRunsIt) {
  auto registry = registry_of({test_plugins("old_minor")});
  ASSERT_TRUE(registry->failures().empty()) << registry->failures()[0].message;
  const shrink::AlgorithmInfo& alg = registry->require("old_scale");
  // The field lies beyond the plugin's struct_size: it must read as absent.
  EXPECT_EQ(alg.supported_op_types, "");
  shrink::QuantizerInstance q(alg, {});
  shrink::SiteSpec spec{"fc", "Linear", "weight", shrink::QuantType::kWeight, {}, {}};
  int site = q.add_site(spec);
  torch::Tensor w = torch::tensor({1.0f, -2.0f, 3.0f});
  EXPECT_TRUE(torch::equal(q.quantize(site, w), w * 0.5f));
  // update_epoch and step lie beyond its quantizer table: calling them is a no-op, not a crash.
  q.update_epoch(0);
  q.step();
}

TEST(PluginRegistryTest, RejectsLibraryWithoutEntryPoint) {
  auto registry = registry_of({test_plugins("no_entry")});
  ASSERT_EQ(registry->failures().size(), 1u);
  EXPECT_TRUE(contains(registry->failures()[0].message, "exports no 'shrink_plugin_entry'"))
      << registry->failures()[0].message;
}

TEST(PluginRegistryTest, RejectsDuplicateAlgorithmNameNamingBothFiles) {
  auto registry = registry_of({test_plugins("c_round"), test_plugins("duplicate")});
  ASSERT_EQ(registry->plugins().size(), 1u);
  ASSERT_EQ(registry->failures().size(), 1u);
  const std::string& message = registry->failures()[0].message;
  EXPECT_TRUE(contains(message, "duplicate algorithm name 'c_round'")) << message;
  EXPECT_TRUE(contains(message, "c_round/c_round.so")) << message;
  EXPECT_TRUE(contains(message, "duplicate/c_round_copy.so")) << message;
  try {
    registry->require("c_round");
    FAIL() << "require of a duplicated name must throw";
  } catch (const shrink::Error& e) {
    EXPECT_TRUE(contains(e.what(), "c_round_copy.so")) << e.what();
  }
}

TEST(PluginRegistryTest, RejectsFilesThatAreNotSharedLibraries) {
  TempDir dir;
  std::ofstream(dir.path() / "notes.txt") << "just some text\n";
  std::ofstream(dir.path() / "fake.so") << "not an ELF file\n";
  auto registry = registry_of({dir.path().string()});
  EXPECT_TRUE(registry->plugins().empty());
  ASSERT_EQ(registry->failures().size(), 2u);
  for (const auto& failure : registry->failures()) {
    EXPECT_TRUE(contains(failure.message, "not a shared library")) << failure.message;
    EXPECT_FALSE(failure.requested);
  }
}

TEST(PluginRegistryTest, RejectsCorruptSharedLibrary) {
  TempDir dir;
  const fs::path good = fs::path(test_plugins("c_round")) / "c_round.so";
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 2000u);
  std::ofstream(dir.path() / "corrupt.so", std::ios::binary) << bytes.substr(0, 1000);
  auto registry = registry_of({dir.path().string()});
  ASSERT_EQ(registry->failures().size(), 1u);
  EXPECT_TRUE(contains(registry->failures()[0].message, "corrupt shared library: truncated"))
      << registry->failures()[0].message;
}

// Header offsets chosen so that offset + count * size wraps around 2^64 and lands inside the file:
// the check must not be fooled into letting dlopen map it.
TEST(PluginRegistryTest, HeaderOffsetsThatOverflowAreTruncation) {
  TempDir dir;
  const fs::path good = fs::path(test_plugins("c_round")) / "c_round.so";
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Elf64_Ehdr header;
  std::memcpy(&header, bytes.data(), sizeof header);
  header.e_phoff = ~uint64_t{0} - 8;  // + e_phnum * e_phentsize wraps to a small number
  std::memcpy(&bytes[0], &header, sizeof header);
  const fs::path file = dir.path() / "wrapped.so";
  std::ofstream(file, std::ios::binary) << bytes;
  EXPECT_EQ(shrink::check_shared_library(file.string()),
            "corrupt shared library: truncated (" + std::to_string(bytes.size()) +
                " bytes, its headers point past the end)");
  EXPECT_EQ(shrink::check_shared_library(good.string()), "");
}

TEST(PluginRegistryTest, MissingExplicitPathIsARequestedFailure) {
  auto registry = registry_of({"/nonexistent/shrink/plugin.so"});
  ASSERT_EQ(registry->failures().size(), 1u);
  EXPECT_TRUE(registry->failures()[0].requested);
  EXPECT_TRUE(contains(registry->failures()[0].message, "no such file or folder"));
}

TEST(PluginRegistryTest, SameFileReachedTwiceLoadsOnce) {
  auto registry = registry_of({test_plugins("c_round"), test_plugins("c_round") + "/c_round.so"});
  EXPECT_EQ(registry->plugins().size(), 1u);
  EXPECT_TRUE(registry->failures().empty());
}

TEST(PluginRegistryTest, RequireUnknownNameListsAvailableAlgorithms) {
  auto registry = registry_of({test_plugins("c_round")});
  try {
    registry->require("nope");
    FAIL() << "require of an unknown name must throw";
  } catch (const shrink::Error& e) {
    EXPECT_TRUE(contains(e.what(), "'nope'")) << e.what();
    EXPECT_TRUE(contains(e.what(), "available: c_round")) << e.what();
  }
}

TEST(PluginRegistryTest, RefusedPluginThatProvidesTheAlgorithmIsNamedWithWhy) {
  auto registry = registry_of({test_plugins("wrong_torch"), test_plugins("c_round")});
  ASSERT_EQ(registry->failures().size(), 1u);
  const auto& failure = registry->failures()[0];
  EXPECT_TRUE(failure.refused);
  EXPECT_EQ(failure.declared, "built against LibTorch 0.0.1");
  ASSERT_TRUE(failure.algorithms_known);
  EXPECT_EQ(failure.algorithms, std::vector<std::string>{"other_torch_pruner"});
  try {
    registry->require("other_torch_pruner");
    FAIL() << "a refused algorithm must not be found";
  } catch (const shrink::Error& e) {
    EXPECT_TRUE(contains(e.what(), "algorithm 'other_torch_pruner' is in " + failure.file +
                                       ", which was refused: built against LibTorch 0.0.1"))
        << e.what();
    EXPECT_FALSE(contains(e.what(), "--plugin-path")) << e.what();
  }
  // Another name is simply missing.
  EXPECT_THROW(registry->require("nope"), shrink::Error);
}

TEST(PluginRegistryTest, RefusedPluginOfAnotherMajorMayProvideAMissingAlgorithm) {
  auto registry = registry_of({test_plugins("wrong_abi")});
  ASSERT_EQ(registry->failures().size(), 1u);
  EXPECT_FALSE(registry->failures()[0].algorithms_known);  // its layout may differ: not read
  try {
    registry->require("my_algorithm");
    FAIL() << "nothing provides it";
  } catch (const shrink::Error& e) {
    EXPECT_TRUE(contains(e.what(), "no loaded plugin provides algorithm 'my_algorithm'"))
        << e.what();
    EXPECT_TRUE(contains(e.what(), "wrong_abi.so refused: built for ABI 2.0")) << e.what();
    EXPECT_TRUE(contains(e.what(), "Rebuild them")) << e.what();
  }
  // A file that is not a plugin at all is no candidate.
  TempDir dir;
  std::ofstream(dir.path() / "notes.txt") << "not a plugin";
  auto other = registry_of({dir.path().string()});
  try {
    other->require("my_algorithm");
    FAIL();
  } catch (const shrink::Error& e) {
    EXPECT_TRUE(contains(e.what(), "add its folder with --plugin-path")) << e.what();
  }
}

TEST(PluginRegistryTest, DiscoveryLogsOneSummaryLineByDefault) {
  testing::internal::CaptureStderr();
  auto registry =
      registry_of({test_plugins("c_round"), test_plugins("learnable"), test_plugins("wrong_abi")});
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(contains(err, "shrink: info: 2 plugins from 2 folders (1 skipped, see above)"))
      << err;
  EXPECT_FALSE(contains(err, "loaded plugin")) << err;  // each plugin's line is at debug level
  EXPECT_TRUE(contains(err, "wrong_abi.so: built for plugin ABI 2.0"))
      << err;  // failures stay loud
}

TEST(PluginRegistryTest, ThrowingCallbacksAreReportedAndTheHostSurvives) {
  auto registry = registry_of({test_plugins("throwing")});
  const shrink::AlgorithmInfo& alg = registry->require("throwing");

  shrink::Options fail_create;
  fail_create.set("fail_create", "true");
  try {
    shrink::QuantizerInstance broken(alg, fail_create);
    FAIL() << "create must fail";
  } catch (const shrink::Error& e) {
    EXPECT_TRUE(contains(e.what(), "deliberate failure in the constructor")) << e.what();
  }

  shrink::QuantizerInstance q(alg, {});
  int weight = q.add_site({"conv1", "Conv2d", "weight", shrink::QuantType::kWeight, {}, {}});
  int output = q.add_site({"conv1", "Conv2d", "_output_", shrink::QuantType::kOutput, {}, {}});
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      q.quantize(weight, torch::ones({2, 2}));
      FAIL() << "quantize_weight must fail";
    } catch (const shrink::Error& e) {
      EXPECT_TRUE(contains(e.what(), "deliberate failure in quantize_weight")) << e.what();
      EXPECT_TRUE(contains(e.what(), "conv1.weight")) << e.what();
    }
  }
  try {
    q.quantize(output, torch::ones({3}));
    FAIL() << "quantize_output must fail";
  } catch (const shrink::Error& e) {
    EXPECT_TRUE(contains(e.what(), "quantize_output")) << e.what();
    EXPECT_TRUE(contains(e.what(), "size of tensor")) << e.what();
  }
}
