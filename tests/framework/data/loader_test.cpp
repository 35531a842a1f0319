// Image folders and list files (real Fashion-MNIST images written by tools/data/
// make_image_folders.py), and the loader: seeded orders and subsets, the same batches for any
// number of workers, a bounded queue, bad samples skipped or named.
#include "test_paths.hpp"
#include "test_support.hpp"

#include <shrink/data/loader.hpp>

#include "data/name_table.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace {

using shrink::test::error_of;

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = shrink::test::test_dir("shrink_loader"); }
  void TearDown() override { fs::remove_all(dir_); }

  // Fashion-MNIST's first `limit` images of each split as an image folder.
  fs::path folder(const std::string& args, int limit = 100) {
    const fs::path out = dir_ / ("images" + std::to_string(made_++));
    const std::string command = std::string(shrink::test::kTorchPython) + " " +
                                shrink::test::kSourceDir + "/tools/data/make_image_folders.py " +
                                out.string() + " --limit " + std::to_string(limit) + " " + args +
                                " > /dev/null";
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    return out;
  }
  static shrink::DataOptions options(const fs::path& root) {
    shrink::DataOptions o;
    o.format = "folder";
    o.path = (root / "train").string();
    o.test_path = (root / "test").string();
    o.workers = 2;
    return o;
  }
  static shrink::DataSplit open(const shrink::DataOptions& o, bool train = true) {
    shrink::DataSplit split(shrink::open_builtin_source(o, train, {}), o, train, 7);
    split.check_labels(10);
    return split;
  }
  // Every batch of one pass, concatenated.
  static shrink::Batch all(const shrink::DataSplit& split, const at::Tensor& positions,
                           bool augment, int64_t epoch, int64_t batch_size = 16) {
    shrink::Loader loader(split, positions, batch_size, augment, epoch);
    std::vector<at::Tensor> xs, ys;
    shrink::Batch b;
    while (loader.next(b)) {
      xs.push_back(b.inputs);
      ys.push_back(b.targets);
    }
    return {at::cat(xs), at::cat(ys)};
  }
  fs::path dir_;
  int made_ = 0;
};

shrink::TransformSpec transform(const std::string& name) {
  shrink::TransformSpec t;
  t.name = name;
  return t;
}

// ImageFolder's numbering: sorted class folder names; the labels match the list file's.
TEST_F(LoaderTest, ClassFoldersAreNumberedInSortedOrderAndAgreeWithTheListFile) {
  const fs::path root = folder("--format png");
  shrink::DataOptions o = options(root);
  const shrink::DataSplit split = open(o);
  ASSERT_EQ(split.source().classes().size(), 10u);
  EXPECT_EQ(split.source().classes()[0], "0_tshirt");
  EXPECT_EQ(split.source().classes()[9], "9_ankle_boot");
  EXPECT_EQ(split.size(), 100);
  EXPECT_EQ(split.shape(), (std::vector<int64_t>{1, 28, 28}));
  std::map<std::string, int64_t> listed;
  std::ifstream list(root / "train.txt");
  std::string path;
  int64_t label = 0;
  while (list >> path >> label) listed[(root / path).lexically_normal().string()] = label;
  ASSERT_EQ(listed.size(), 100u);
  const at::Tensor labels = split.source().labels();
  for (int64_t i = 0; i < split.size(); ++i) {
    const std::string name = fs::path(split.source().name(i)).lexically_normal().string();
    ASSERT_EQ(listed.count(name), 1u) << name;
    EXPECT_EQ(listed[name], labels[i].item<int64_t>()) << name;
  }
  // The same images through the list file, in its order.
  shrink::DataOptions by_list = o;
  by_list.path.clear();
  by_list.list = (root / "train.txt").string();
  const shrink::DataSplit listed_split = open(by_list);
  EXPECT_EQ(listed_split.size(), 100);
  const shrink::Batch a = all(split, at::arange(100), false, 0);
  const shrink::Batch b = all(listed_split, at::arange(100), false, 0);
  EXPECT_TRUE(std::get<0>(at::sort(a.targets)).equal(std::get<0>(at::sort(b.targets))));
  EXPECT_NEAR(a.inputs.sum().item<double>(), b.inputs.sum().item<double>(), 1e-2);
}

// Same seed, same batches, whatever the number of workers: each sample's augmentation is drawn
// from a generator of its own, and batches come out in order.
TEST_F(LoaderTest, TheBatchesAreTheSameForAnyNumberOfWorkers) {
  shrink::DataOptions o = options(folder("--format jpeg --rgb --size 32"));
  shrink::TransformSpec crop = transform("random_crop"), flip = transform("random_horizontal_flip");
  crop.size = {28, 28};
  crop.padding = {2, 2, 2, 2};
  shrink::TransformSpec center = transform("center_crop");
  center.size = {28, 28};
  o.train_transforms = {crop, flip};
  o.test_transforms = {center};
  std::vector<shrink::Batch> passes;
  for (int64_t workers : {0, 1, 3}) {
    o.workers = workers;
    o.prefetch = 2;
    const shrink::DataSplit split = open(o);
    passes.push_back(all(split, split.order(3), true, 3));
  }
  EXPECT_EQ(passes[0].inputs.sizes(), c10::IntArrayRef({100, 3, 28, 28}));
  for (const shrink::Batch& b : passes) {
    EXPECT_TRUE(b.inputs.equal(passes[0].inputs));
    EXPECT_TRUE(b.targets.equal(passes[0].targets));
  }
  // Another epoch: another order and other crops.
  const shrink::DataSplit split = open(o);
  const shrink::Batch other = all(split, split.order(4), true, 4);
  EXPECT_FALSE(other.targets.equal(passes[0].targets));
  const shrink::Batch again = all(split, at::arange(100), true, 4);
  const shrink::Batch before = all(split, at::arange(100), true, 3);
  EXPECT_FALSE(again.inputs.equal(before.inputs));
}

TEST_F(LoaderTest, OrdersAndSubsetsAreSeededAndRandom) {
  shrink::DataOptions o = options(folder("--format png"));
  o.train_limit = 30;
  const shrink::DataSplit a = open(o), b = open(o);
  EXPECT_EQ(a.size(), 30);
  std::vector<int64_t> chosen;
  for (int64_t p = 0; p < 30; ++p) chosen.push_back(a.sample_index(p));
  EXPECT_GT(chosen.back(), 29) << "the first 30, not a random subset";
  EXPECT_TRUE(std::is_sorted(chosen.begin(), chosen.end()));
  for (int64_t p = 0; p < 30; ++p) EXPECT_EQ(b.sample_index(p), chosen[p]);
  EXPECT_TRUE(a.order(1).equal(b.order(1)));
  EXPECT_FALSE(a.order(1).equal(a.order(2)));
  shrink::DataSplit other(shrink::open_builtin_source(o, true, {}), o, true, 8);
  bool same = true;
  for (int64_t p = 0; p < 30; ++p) same = same && other.sample_index(p) == chosen[p];
  EXPECT_FALSE(same) << "another seed picked the same subset";
}

// A source that records the furthest sample asked for.
class Counting : public shrink::Source {
 public:
  int64_t size() const override { return 1000; }
  shrink::Sample get(int64_t i) const override {
    int64_t seen = furthest.load();
    while (i > seen && !furthest.compare_exchange_weak(seen, i)) {
    }
    return {at::full({1, 2, 2}, static_cast<float>(i)), i % 10};
  }
  std::string name(int64_t i) const override { return "sample " + std::to_string(i); }
  mutable std::atomic<int64_t> furthest{-1};
};

// Workers prepare at most `prefetch` batches beyond the one being consumed: memory does not grow
// with the data.
TEST_F(LoaderTest, WorkersStayWithinThePrefetchQueue) {
  auto source = std::make_shared<Counting>();
  shrink::DataOptions o;
  o.workers = 2;
  o.prefetch = 3;
  shrink::DataSplit split(source, o, true, 0);
  shrink::Loader loader(split, at::arange(1000), 10, false, 0);
  shrink::Batch b;
  ASSERT_TRUE(loader.next(b));
  EXPECT_TRUE(b.inputs.flatten(1).select(1, 0).equal(at::arange(10, at::kFloat)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // Batch 0 taken: batches 1 to 3 may be ready, nothing from batch 4 (samples 40 on) on.
  EXPECT_LT(source->furthest.load(), 40);
  EXPECT_GE(source->furthest.load(), 30);
  int64_t seen = b.size();
  while (loader.next(b)) seen += b.size();
  EXPECT_EQ(seen, 1000);
}

TEST_F(LoaderTest, ABadImageIsAnErrorNamingItOrSkippedAndCounted) {
  const fs::path root = folder("--format jpeg");
  const fs::path bad = root / "train" / "0_tshirt" / "00002.jpg";  // not the first sample
  std::ofstream(bad, std::ios::binary | std::ios::trunc) << "\xff\xd8\xff garbage";
  shrink::DataOptions o = options(root);
  const shrink::DataSplit split = open(o);
  const std::string why = error_of([&] { all(split, at::arange(100), false, 0); });
  EXPECT_EQ(why.rfind(bad.string() + ": not a readable JPEG (", 0), 0u) << why;
  o.on_bad_sample = "skip";
  const shrink::DataSplit skipping = open(o);
  EXPECT_EQ(all(skipping, at::arange(100), false, 0).size(), 99);
  EXPECT_EQ(skipping.skipped(), 1);
}

TEST_F(LoaderTest, BadFoldersAndListsAreOneLineEach) {
  const fs::path root = folder("--format png");
  shrink::DataOptions o = options(root);
  fs::create_directories(root / "train" / "99_empty");
  EXPECT_EQ(error_of([&] { open(o); }),
            (root / "train").string() +
                "/99_empty: an empty class folder (no .jpg, .jpeg or .png image in it)");
  fs::remove(root / "train" / "99_empty");
  const fs::path flat = dir_ / "flat";
  fs::create_directories(flat);
  fs::copy_file(root / "train" / "0_tshirt" / "00001.png", flat / "a.png");
  o.path = flat.string();
  EXPECT_EQ(error_of([&] { open(o); }),
            flat.string() + ": no class folders (expected " + flat.string() +
                "/<class>/<image>; the images lie in the folder itself, or data.list for a "
                "list file)");
  fs::create_directories(flat / "cats");
  std::ofstream(flat / "cats" / "a.webp") << "RIFF";
  EXPECT_EQ(error_of([&] { open(o); }),
            (flat / "cats" / "a.webp").string() +
                ": a .webp image; Shrink reads JPEG and PNG (.jpg, .jpeg, .png)");
  std::ofstream(dir_ / "list.txt") << "images0/train/0_tshirt/00001.png 0\n"
                                   << "images0/train/0_tshirt/missing.png 3\n";
  o.path.clear();
  o.list = (dir_ / "list.txt").string();
  EXPECT_EQ(
      error_of([&] { open(o); }),
      o.list + ":2: " + (dir_ / "images0/train/0_tshirt/missing.png").string() + ": no such file");
  std::ofstream(dir_ / "list.txt") << "images0/train/0_tshirt/00001.png cat\n";
  EXPECT_EQ(error_of([&] { open(o); }), o.list + ":1: label 'cat': expected a class index >= 0");
}

// Images of two sizes and no resize: the two files and their sizes, when the second is read.
TEST_F(LoaderTest, MixedSizesWithoutAResizeNameTwoFiles) {
  const fs::path small = folder("--format png"), large = folder("--format png --size 30");
  const fs::path odd = small / "train" / "3_dress" / "odd.png";
  fs::copy_file(large / "train" / "3_dress" / "00003.png", odd);
  shrink::DataOptions o = options(small);
  const shrink::DataSplit split = open(o);
  const std::string why = error_of([&] { all(split, at::arange(split.size()), false, 0); });
  EXPECT_EQ(why, split.first_name() + " is [1, 28, 28] and " + odd.string() +
                     " is [1, 30, 30] once prepared: samples of different sizes need a resize "
                     "or a crop in data.transforms");
  shrink::TransformSpec resize = transform("resize");
  resize.size = {28, 28};
  o.train_transforms = o.test_transforms = {resize};
  const shrink::DataSplit resized = open(o);
  EXPECT_EQ(all(resized, at::arange(resized.size()), false, 0).size(), 101);
}

}  // namespace

namespace {

// Front-coded names read back exactly, in any order, across blocks and chunks.
TEST(NameTableTest, NamesComeBackExactly) {
  shrink::detail::NameTable table;
  std::vector<std::string> names;
  for (int c = 0; c < 30; ++c) {
    for (int i = 0; i < 1500; ++i) {
      names.push_back("class_" + std::to_string(c) + "/sub" + std::to_string(i % 3) + "/" +
                      std::to_string(100000 + i) + (i % 7 ? ".jpg" : ".png"));
    }
  }
  names.push_back(std::string(4096, 'x'));  // the longest allowed
  names.push_back("a");
  for (const std::string& n : names) table.add(n);
  ASSERT_EQ(table.size(), static_cast<int64_t>(names.size()));
  for (int64_t i = static_cast<int64_t>(names.size()) - 1; i >= 0; i -= 7) {
    EXPECT_EQ(table.get(i), names[static_cast<std::size_t>(i)]) << i;
  }
  EXPECT_EQ(table.get(0), names[0]);
  // Sorted paths share most of their bytes: far less than the names themselves.
  std::size_t raw = 0;
  for (const std::string& n : names) raw += n.size();
  EXPECT_LT(table.bytes(), raw);
  EXPECT_THROW(table.add(std::string(4097, 'y')), std::length_error);
}

}  // namespace
