// Data as it loads: labels checked against the model's classes, IDX headers checked before their
// bodies are read, a split that cannot fit in memory refused in one line.
#include "test_support.hpp"

#include <shrink/core/error.hpp>
#include <shrink/data/dataset.hpp>

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
  o.mean = {0.5};
  o.std = {0.25};
  const shrink::Dataset normalized = shrink::load_dataset(o, true);
  ASSERT_EQ(normalized.warnings.size(), 1u);
  EXPECT_NE(normalized.warnings[0].find(o.path + ": the inputs are floats of mean "),
            std::string::npos)
      << normalized.warnings[0];
  EXPECT_NE(normalized.warnings[0].find("already; data.normalize is applied to them again"),
            std::string::npos);
  o = tensors(torch::rand({500, 1, 4, 4}), labels);  // in [0, 1): mean 0.5
  o.mean = {0.5};
  o.std = {0.25};
  EXPECT_TRUE(shrink::load_dataset(o, true).warnings.empty());
  o = tensors(torch::randn({500, 1, 4, 4}), labels);  // no normalize asked
  EXPECT_TRUE(shrink::load_dataset(o, true).warnings.empty());
}

TEST_F(DatasetTest, LabelsOutsideTheModelsClassesNameFileAndSample) {
  const at::Tensor x = torch::rand({6, 1, 4, 4});
  auto o = tensors(x, torch::tensor({0, 1, 2, 200, 3, 4}, torch::kLong));
  EXPECT_EQ(error_of([&] { shrink::load_dataset(o, false, 10); }),
            o.path + ": label 200 of sample 3 is outside [0, 10), the model's 10 classes");
  o = tensors(x, torch::tensor({0, -5, 2, 1, 3, 4}, torch::kLong));
  EXPECT_EQ(error_of([&] { shrink::load_dataset(o, true, 0); }),
            o.path + ": label -5 of sample 1 is negative");
  o = tensors(x, torch::tensor({-100, -100, -100, -100, -100, -100}, torch::kLong));
  EXPECT_NE(error_of([&] { shrink::load_dataset(o, false, 10); }).find("label -100 of sample 0"),
            std::string::npos);
  o = tensors(x, torch::tensor({0.0, 3.7, 2.0, 1.0, 3.0, 4.0}));
  EXPECT_EQ(error_of([&] { shrink::load_dataset(o, true, 10); }),
            o.path + ": the labels are Float, expected integer class indices");
  o = tensors(x, torch::tensor({0, 9, 2, 1, 3, 4}, torch::kInt));
  const shrink::Dataset d = shrink::load_dataset(o, true, 10);
  EXPECT_EQ(d.targets.scalar_type(), at::kLong);
  EXPECT_EQ(d.targets[1].item<int64_t>(), 9);
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
  EXPECT_EQ(error_of([&] { shrink::sample_shape(o); }),
            o.path + ": inputs have 0 dimensions, expected [N, H, W] or [N, C, H, W]");
  EXPECT_EQ(error_of([&] { shrink::load_dataset(o, true, 10); }),
            o.path + ": inputs have 0 dimensions, expected [N, H, W] or [N, C, H, W]");
  o = tensors(torch::zeros({4, 28, 28}), torch::tensor(3));
  EXPECT_EQ(error_of([&] { shrink::load_dataset(o, true, 10); }),
            o.path + ": the labels have shape [], expected [N] class indices");
  o = tensors(torch::zeros({4, 28, 28}, torch::kInt), torch::zeros({4}, torch::kLong));
  EXPECT_EQ(error_of([&] { shrink::load_dataset(o, true, 10); }),
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
  EXPECT_EQ(error_of([&] { shrink::load_dataset(o, true, 10); }),
            o.path +
                ": not a file written by torch.save((inputs, targets)): its directory lies "
                "past the end");
  std::ofstream(o.path, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_NE(error_of([&] {
              shrink::load_dataset(o, true, 10);
            }).find(": not a file written by torch.save((inputs, targets))"),
            std::string::npos);
}

TEST_F(DatasetTest, ASplitThatCannotFitInMemoryIsOneLine) {
  // 1000 tiny samples that resize and channel replication would blow up to 4.3 TB.
  auto o = tensors(torch::rand({1000, 1, 1, 1}), torch::zeros({1000}, torch::kLong));
  o.resize = 4096;
  o.channels = 64;
  const std::string why = error_of([&] { shrink::load_dataset(o, true, 10); });
  EXPECT_NE(why.find(": 1000 samples of [64, 4096, 4096] need 4294.97 GB as float32, more than "
                     "half this machine's"),
            std::string::npos)
      << why;
}

TEST_F(DatasetTest, SampleShapeComesFromTheHeaderAndTheOptions) {
  idx_file("train-images-idx3-ubyte", {3, 28, 28}, 3 * 28 * 28);
  shrink::DataOptions o;
  o.path = dir_.string();
  EXPECT_EQ(shrink::sample_shape(o), (std::vector<int64_t>{1, 28, 28}));
  o.resize = 32;
  o.channels = 3;
  EXPECT_EQ(shrink::sample_shape(o), (std::vector<int64_t>{3, 32, 32}));
  auto t = tensors(torch::rand({4, 2, 5, 6}), torch::zeros({4}, torch::kLong));
  EXPECT_EQ(shrink::sample_shape(t), (std::vector<int64_t>{2, 5, 6}));
}

}  // namespace
