// Writing results so that a failure loses nothing: a full disk, a folder in the way, two runs into
// one folder. The full disk is a real one: a 1 MiB tmpfs (skipped where mounting is not allowed).
#include "test_support.hpp"

#include <shrink/core/error.hpp>
#include <shrink/core/files.hpp>

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

namespace fs = std::filesystem;

namespace {

std::string read_all(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = shrink::test::test_dir("shrink_files");
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (mounted_) umount(dir_.c_str());
    fs::remove_all(dir_);
  }
  // A `size`-byte tmpfs (rw or ro) on dir_; false where mounting is not permitted.
  bool mount_tmpfs(const std::string& size, bool read_only = false) {
    const std::string options = "size=" + size;
    mounted_ =
        mount("tmpfs", dir_.c_str(), "tmpfs", read_only ? MS_RDONLY : 0, options.c_str()) == 0;
    return mounted_;
  }
  std::size_t files_in_dir() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir_), {}));
  }
  fs::path dir_;
  bool mounted_ = false;
};

TEST_F(FilesTest, WritesTheWholeFileAndLeavesNoTemporary) {
  const fs::path file = dir_ / "report.json";
  shrink::write_file_atomically(file, "first");
  shrink::write_file_atomically(file, "second");
  EXPECT_EQ(read_all(file), "second");
  EXPECT_EQ(files_in_dir(), 1u);
}

TEST_F(FilesTest, DiskFullIsOneLineAndKeepsThePreviousFile) {
  if (!mount_tmpfs("1m")) GTEST_SKIP() << "mounting a tmpfs is not permitted here";
  const fs::path file = dir_ / "checkpoint.pt";
  const std::string small(300 << 10, 'a'), big(800 << 10, 'b');
  shrink::write_file_atomically(file, small);
  try {
    shrink::write_file_atomically(file, big);  // 300 KiB + 800 KiB > 1 MiB
    FAIL() << "a write past the end of the disk succeeded";
  } catch (const shrink::Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("no space left writing " + file.string() + ": 819200 bytes needed, ", 0),
              0u)
        << what;
    EXPECT_NE(what.find(" free"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  EXPECT_EQ(read_all(file), small);  // the previous checkpoint, intact
  EXPECT_EQ(files_in_dir(), 1u);     // and no temporary file
}

TEST_F(FilesTest, AFolderInTheWayIsAnErrorNamingThePath) {
  fs::create_directories(dir_ / "model_int8.pt");
  try {
    shrink::write_file_atomically(dir_ / "model_int8.pt", "x");
    FAIL() << "wrote over a folder";
  } catch (const shrink::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model_int8.pt: cannot be written"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(files_in_dir(), 1u);
}

TEST_F(FilesTest, ASecondLockOnAFolderNamesTheHolder) {
  auto first = std::make_unique<shrink::FolderLock>(dir_ / "out");
  try {
    shrink::FolderLock second(dir_ / "out");
    FAIL() << "two locks on one folder";
  } catch (const shrink::Error& e) {
    EXPECT_EQ(std::string(e.what()),
              (dir_ / "out").string() + ": another run (pid " + std::to_string(getpid()) +
                  ") is writing its results here; wait for it to end or choose another --out");
  }
  first.reset();  // released: the next run may write here
  EXPECT_NO_THROW(shrink::FolderLock again(dir_ / "out"));
}

TEST_F(FilesTest, UnwritableOutputFoldersAreFoundBeforeAnythingRuns) {
  std::ofstream(dir_ / "a_file") << "x";
  EXPECT_EQ(shrink::unwritable_folder(dir_ / "new" / "deeper"), "");
  EXPECT_EQ(shrink::unwritable_folder(dir_ / "a_file"),
            (dir_ / "a_file").string() + " is a file, not a folder");
  EXPECT_EQ(shrink::unwritable_folder(dir_ / "a_file" / "out"),
            (dir_ / "a_file").string() + " is a file, not a folder");
  if (!mount_tmpfs("1m", /*read_only=*/true)) GTEST_SKIP() << "mounting a tmpfs is not permitted";
  const std::string why = shrink::unwritable_folder(dir_ / "out");
  EXPECT_EQ(why.rfind(dir_.string() + " is not writable (", 0), 0u) << why;
}

}  // namespace
