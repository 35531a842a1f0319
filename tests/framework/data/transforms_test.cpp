// The loader's transforms and decoders against torchvision's: the same real images (Fashion-MNIST
// written as PNG and JPEG by tests/framework/data/torchvision_reference.py), decoded by PIL as
// ImageFolder does and transformed by torchvision.transforms.functional, compared exactly.
#include "test_paths.hpp"
#include "test_support.hpp"

#include <shrink/data/source.hpp>
#include <shrink/data/transforms.hpp>

#include "data/image_codec.hpp"

#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

namespace fs = std::filesystem;
namespace tf = shrink::transforms;

namespace {

class TransformsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Made once for the suite (no test is running yet: test_dir() names a test's folder).
    dir_ = new fs::path(fs::temp_directory_path() / ("shrink_tv_" + std::to_string(::getpid())));
    const std::string command =
        std::string(shrink::test::kTorchPython) + " " + shrink::test::kSourceDir +
        "/tests/framework/data/torchvision_reference.py " + dir_->string() + " > /dev/null";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    std::ifstream in(*dir_ / "refs.pt", std::ios::binary);
    const std::vector<char> bytes{std::istreambuf_iterator<char>(in), {}};
    refs_ = new std::map<std::string, at::Tensor>();
    for (const auto& kv : torch::pickle_load(bytes).toGenericDict()) {
      (*refs_)[kv.key().toStringRef()] = kv.value().toTensor();
    }
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete refs_;
  }

  static at::Tensor ref(const std::string& name) {
    const auto it = refs_->find(name);
    EXPECT_NE(it, refs_->end()) << name;
    return it == refs_->end() ? at::Tensor() : it->second;
  }
  // The image as the loader decodes it for a gray (1) or colour (3) folder, as float.
  static at::Tensor decoded(const std::string& name, int channels) {
    return tf::to_float(shrink::detail::decode_image((*dir_ / name).string(), channels, {}));
  }
  static void expect_equal(const at::Tensor& ours, const std::string& name) {
    const at::Tensor theirs = ref(name);
    ASSERT_TRUE(theirs.defined());
    ASSERT_EQ(ours.sizes(), theirs.sizes()) << name;
    EXPECT_TRUE(ours.equal(theirs))
        << name << ": max difference " << (ours - theirs).abs().max().item<double>();
  }

  static fs::path* dir_;
  static std::map<std::string, at::Tensor>* refs_;
};

fs::path* TransformsTest::dir_ = nullptr;
std::map<std::string, at::Tensor>* TransformsTest::refs_ = nullptr;

const std::vector<std::pair<std::string, int>> kImages = {
    {"gray.png", 1}, {"rgb.png", 3}, {"rgb.jpg", 3}, {"rgba.png", 3}, {"gray_as_rgb.jpg", 3}};

// libpng and TurboJPEG give PIL's pixels: PNG gray, RGB and RGBA (alpha dropped as convert("RGB")
// drops it), JPEG through the same libjpeg-turbo, and colour to gray by PIL's weights.
TEST_F(TransformsTest, DecodingGivesPilsPixels) {
  for (const auto& [name, channels] : kImages)
    expect_equal(decoded(name, channels), name + "/decoded");
  expect_equal(decoded("rgb.png", 1), "rgb.png/as_gray/decoded");
  // A gray image in a colour folder is replicated, as convert("RGB") does.
  const at::Tensor gray = decoded("gray.png", 3);
  EXPECT_TRUE(gray.equal(ref("gray.png/decoded").expand({3, -1, -1})));
}

TEST_F(TransformsTest, DeterministicTransformsAreTorchvisionsExactly) {
  for (const auto& [name, channels] : kImages) {
    const at::Tensor x = decoded(name, channels);
    expect_equal(tf::resize(x, {24}, true), name + "/resize_24");
    expect_equal(tf::resize(x, {20, 30}, true), name + "/resize_20x30");
    expect_equal(tf::resize(x, {40, 40}, false), name + "/resize_40x40_noaa");
    expect_equal(tf::resize(x, {96}, true), name + "/resize_96_up");
    expect_equal(tf::center_crop(x, 21, 17), name + "/center_crop_21x17");
    expect_equal(tf::center_crop(x, 70, 71), name + "/center_crop_70x71");
    expect_equal(tf::hflip(x), name + "/hflip");
    const std::vector<double> mean = {0.3, 0.4, 0.5}, std = {0.2, 0.25, 0.3};
    expect_equal(tf::normalize(x, {mean.begin(), mean.begin() + channels},
                               {std.begin(), std.begin() + channels}),
                 name + "/normalize");
  }
}

// A random transform is torchvision's for the same draws: the crop box and the flip decide it.
TEST_F(TransformsTest, RandomTransformsAreTorchvisionsForTheSameParameters) {
  for (const auto& [name, channels] : kImages) {
    const at::Tensor x = decoded(name, channels);
    expect_equal(tf::resize(tf::crop(x, {3, 5, 20, 15}), {32, 32}, true),
                 name + "/resized_crop_3_5_20_15_to_32");
    expect_equal(tf::crop(tf::pad(x, {4, 4, 4, 4}), {2, 7, 28, 28}),
                 name + "/pad_4_crop_2_7_28_28");
  }
}

// Inside the pipeline, a random transform draws its parameters as torchvision's get_params do,
// from a generator of the sample's own: the same seed, the same output.
TEST_F(TransformsTest, APipelinesDrawsAreTheSampleSeeds) {
  shrink::TransformSpec crop, flip;
  crop.name = "random_resized_crop";
  crop.size = {32, 32};
  flip.name = "random_horizontal_flip";
  const shrink::Pipeline pipeline({crop, flip});
  const at::Tensor x = decoded("rgb.jpg", 3);
  int flips = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    shrink::SampleRng rng(seed);
    const shrink::CropBox box = tf::random_resized_crop_box(48, 64, crop.scale, crop.ratio, rng);
    const double area = static_cast<double>(box.height * box.width) / (48.0 * 64.0);
    EXPECT_GE(area, 0.08 * 0.9);
    EXPECT_LE(box.top + box.height, 48);
    EXPECT_LE(box.left + box.width, 64);
    at::Tensor expected = tf::resize(tf::crop(x, box), {32, 32}, true);
    const bool flipped = rng.uniform(0.0, 1.0) < 0.5;
    flips += flipped;
    if (flipped) expected = tf::hflip(expected);
    EXPECT_TRUE(pipeline.apply(x, seed).equal(expected)) << "seed " << seed;
    EXPECT_TRUE(pipeline.apply(x, seed).equal(pipeline.apply(x, seed)));
  }
  EXPECT_GT(flips, 5);
  EXPECT_LT(flips, 35);
}

TEST_F(TransformsTest, AnUnreadableImageIsABadSampleNamingTheFile) {
  const fs::path broken = *dir_ / "broken.jpg";
  std::ifstream in(*dir_ / "rgb.jpg", std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), {}};
  std::ofstream(broken, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  try {
    shrink::detail::decode_image(broken.string(), 3, {});
    FAIL() << "a truncated JPEG decoded";
  } catch (const shrink::BadSample& e) {
    EXPECT_EQ(std::string(e.what()).rfind(broken.string() + ": corrupt JPEG (", 0), 0u) << e.what();
  }
  std::ofstream(*dir_ / "text.png") << "not an image";
  EXPECT_EQ(shrink::test::error_of(
                [&] { shrink::detail::decode_image((*dir_ / "text.png").string(), 3, {}); }),
            (*dir_ / "text.png").string() + ": not a JPEG or PNG image");
}

// TurboJPEG's scaled decoding: 1/2 of a 48x64 JPEG keeps a shorter side of 24.
TEST_F(TransformsTest, ScaledDecodingKeepsTheFloor) {
  const std::string file = (*dir_ / "rgb.jpg").string();
  EXPECT_EQ(shrink::detail::decode_image(file, 3, {24}).sizes(), c10::IntArrayRef({3, 24, 32}));
  EXPECT_EQ(shrink::detail::decode_image(file, 3, {12}).sizes(), c10::IntArrayRef({3, 12, 16}));
  EXPECT_EQ(shrink::detail::decode_image(file, 3, {25}).sizes(), c10::IntArrayRef({3, 48, 64}));
  EXPECT_EQ(shrink::detail::decode_image(file, 3, {6, 8}).sizes(), c10::IntArrayRef({3, 6, 8}));
}

}  // namespace
