// Data as it opens: labels checked against the model's classes, IDX headers checked before their
// bodies are read, torch.save files checked before LibTorch reads them.
#include "test_support.hpp"

#include <shrink/core/error.hpp>
#include <shrink/data/loader.hpp>

#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

namespace fs = std::filesystem;

namespace {

using shrink::test::error_of;

shrink::TransformSpec normalize(std::vector<double> mean, std::vector<double> std) {
  shrink::TransformSpec t;
  t.name = "normalize";
  t.mean = std::move(mean);
  t.std = std::move(std);
  return t;
}

// The split as the run opens it (train: the training one), its labels checked against `classes`.
shrink::DataSplit open(const shrink::DataOptions& o, bool train, int64_t classes = 0) {
  shrink::DataSplit split(shrink::open_builtin_source(o, train, {}), o, train, 0);
  split.check_labels(classes);
  return split;
}

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = shrink::test::test_dir("shrink_data");
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // torch.save((inputs, targets)) as Python writes it.
  std::string tensors_file(const at::Tensor& inputs, const at::Tensor& targets) {
    const fs::path file = dir_ / "data.pt";
    const std::vector<char> bytes =
        torch::pickle_save(c10::ivalue::Tuple::create({inputs, targets}));
    std::ofstream(file, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return file.string();
  }
  shrink::DataOptions tensors(const at::Tensor& inputs, const at::Tensor& targets) {
    shrink::DataOptions o;
    o.format = "tensors";
    o.path = o.test_path = tensors_file(inputs, targets);
    return o;
  }
  // An IDX file of unsigned bytes: the header for `shape`, then `body_bytes` zeros.
  void idx_file(const std::string& name, const std::vector<uint32_t>& shape,
                std::size_t body_bytes) {
    std::ofstream out(dir_ / name, std::ios::binary);
    const unsigned char magic[4] = {0, 0, 0x08, static_cast<unsigned char>(shape.size())};
    out.write(reinterpret_cast<const char*>(magic), 4);
    for (uint32_t d : shape) {
      const unsigned char be[4] = {
          static_cast<unsigned char>(d >> 24), static_cast<unsigned char>(d >> 16),
          static_cast<unsigned char>(d >> 8), static_cast<unsigned char>(d)};
      out.write(reinterpret_cast<const char*>(be), 4);
    }
    out << std::string(body_bytes, '\0');
  }
  fs::path dir_;
};

// data.normalize over float inputs that are normalized already is said (it halves accuracy
// silently otherwise); over raw bytes or unnormalized floats it is not.
TEST_F(DatasetTest, NormalizingNormalizedInputsIsAWarning) {
  torch::manual_seed(0);
  const at::Tensor labels = torch::zeros({500}, torch::kLong);
  auto o = tensors(torch::randn({500, 1, 4, 4}), labels);
  o.train_transforms = o.test_transforms = {normalize({0.5}, {0.25})};
  const std::vector<std::string> warnings = open(o, true).source().warnings();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find(o.path + ": the inputs are floats of mean "), std::string::npos)
      << warnings[0];
  EXPECT_NE(warnings[0].find("already; data.normalize is applied to them again"),
            std::string::npos);
  o = tensors(torch::rand({500, 1, 4, 4}), labels);  // in [0, 1): mean 0.5
  o.train_transforms = o.test_transforms = {normalize({0.5}, {0.25})};
  EXPECT_TRUE(open(o, true).source().warnings().empty());
  o = tensors(torch::randn({500, 1, 4, 4}), labels);  // no normalize asked
  EXPECT_TRUE(open(o, true).source().warnings().empty());
}

TEST_F(DatasetTest, LabelsOutsideTheModelsClassesNameFileAndSample) {
  const at::Tensor x = torch::rand({6, 1, 4, 4});
  auto o = tensors(x, torch::tensor({0, 1, 2, 200, 3, 4}, torch::kLong));
  EXPECT_EQ(error_of([&] { open(o, false, 10); }),
            o.path + ": sample 3: label 200 is outside [0, 10), the model's 10 classes");
  o = tensors(x, torch::tensor({0, -5, 2, 1, 3, 4}, torch::kLong));
  EXPECT_EQ(error_of([&] { open(o, true, 0); }), o.path + ": sample 1: label -5 is negative");
  o = tensors(x, torch::tensor({-100, -100, -100, -100, -100, -100}, torch::kLong));
  EXPECT_NE(error_of([&] { open(o, false, 10); }).find("sample 0: label -100"), std::string::npos);
  o = tensors(x, torch::tensor({0.0, 3.7, 2.0, 1.0, 3.0, 4.0}));
  EXPECT_EQ(error_of([&] { open(o, true, 10); }),
            o.path + ": the labels are Float, expected integer class indices");
  o = tensors(x, torch::tensor({0, 9, 2, 1, 3, 4}, torch::kInt));
  const shrink::Batch b = shrink::read_batch(open(o, true, 10), torch::arange(6), false, 0);
  EXPECT_EQ(b.targets.scalar_type(), at::kLong);
  EXPECT_EQ(b.targets[1].item<int64_t>(), 9);
  EXPECT_TRUE(b.inputs.equal(x));
}

TEST_F(DatasetTest, AnIdxHeaderPromisingMoreThanMemoryIsRefusedBeforeItsBody) {
  // 100000^3 bytes: a gzip bomb's or a corrupt header's promise; nothing is allocated.
  idx_file("huge", {100000, 100000, 100000}, 16);
  const std::string why = error_of([&] { shrink::read_idx((dir_ / "huge").string()); });
  EXPECT_NE(why.find("the IDX header promises 1e+15 bytes, more than this machine's memory"),
            std::string::npos)
      << why;
  // 1e9 bytes fit in memory, not in a 24-byte plain file (nor in a gzip file of its size).
  idx_file("small", {1000, 1000, 1000}, 8);
  EXPECT_EQ(error_of([&] { shrink::read_idx((dir_ / "small").string()); }),
            (dir_ / "small").string() +
                ": the IDX header promises 1e+09 bytes, more than the file can hold");
  idx_file("long", {2, 3}, 7);
  EXPECT_EQ(error_of([&] { shrink::read_idx((dir_ / "long").string()); }),
            (dir_ / "long").string() + ": more bytes of data, the header promises 6");
  idx_file("short", {2, 3}, 5);
  EXPECT_EQ(error_of([&] { shrink::read_idx((dir_ / "short").string()); }),
            (dir_ / "short").string() + ": 5 bytes of data, the header promises 6");
  idx_file("right", {2, 3}, 6);
  EXPECT_EQ(shrink::read_idx((dir_ / "right").string()).sizes(), c10::IntArrayRef({2, 3}));
}

TEST_F(DatasetTest, TensorsOfTheWrongKindAreRefusedBeforeAnythingUsesThem) {
  auto o = tensors(torch::tensor(0.5), torch::tensor({1}));
  EXPECT_EQ(error_of([&] { open(o, true, 10); }),
            o.path + ": inputs have 0 dimensions, expected [N, H, W] or [N, C, H, W]");
  o = tensors(torch::zeros({4, 28, 28}), torch::tensor(3));
  EXPECT_EQ(error_of([&] { open(o, true, 10); }),
            o.path + ": the labels have shape [], expected [N] class indices");
  o = tensors(torch::zeros({4, 28, 28}, torch::kInt), torch::zeros({4}, torch::kLong));
  EXPECT_EQ(error_of([&] { open(o, true, 10); }),
            o.path + ": the inputs are Int, expected uint8 or floating point");
}

// LibTorch's zip reader trusts the file's directory: a directory that points past the end, or an
// entry declaring more than the file holds, is refused before LibTorch reads it.
TEST_F(DatasetTest, ATorchSaveFileWhoseDirectoryLiesIsRefusedBeforeLibTorchReadsIt) {
  auto o = tensors(torch::rand({4, 1, 4, 4}), torch::zeros({4}, torch::kLong));
  std::ifstream in(o.path, std::ios::binary);
  std::string bytes{std::istreambuf_iterator<char>(in), {}};
  in.close();
  const std::size_t eocd = bytes.rfind(std::string("PK\x05\x06", 4));
  ASSERT_NE(eocd, std::string::npos);
  std::string moved = bytes;
  moved[eocd + 16] = '\xff';  // the directory's offset, far past the end
  moved[eocd + 17] = '\xff';
  moved[eocd + 18] = '\xff';
  std::ofstream(o.path, std::ios::binary) << moved;
  EXPECT_EQ(error_of([&] { open(o, true, 10); }),
            o.path +
                ": not a file written by torch.save((inputs, targets)): its directory lies "
                "past the end");
  std::ofstream(o.path, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_NE(error_of([&] {
              open(o, true, 10);
            }).find(": not a file written by torch.save((inputs, targets))"),
            std::string::npos);
}

// The shape the model is checked on is a prepared sample's: the first one, through the options'
// transforms (the old keys resize and channels mean resize and to_channels).
TEST_F(DatasetTest, SampleShapeIsAPreparedSamples) {
  idx_file("train-images-idx3-ubyte", {3, 28, 28}, 3 * 28 * 28);
  idx_file("train-labels-idx1-ubyte", {3}, 3);
  shrink::DataOptions o;
  o.path = dir_.string();
  EXPECT_EQ(open(o, true).shape(), (std::vector<int64_t>{1, 28, 28}));
  shrink::TransformSpec resize, channels;
  resize.name = "resize";
  resize.size = {32, 32};
  channels.name = "to_channels";
  channels.channels = 3;
  o.train_transforms = o.test_transforms = {resize, channels};
  EXPECT_EQ(open(o, true).shape(), (std::vector<int64_t>{3, 32, 32}));
  auto t = tensors(torch::rand({4, 2, 5, 6}), torch::zeros({4}, torch::kLong));
  EXPECT_EQ(open(t, true).shape(), (std::vector<int64_t>{2, 5, 6}));
}

}  // namespace
