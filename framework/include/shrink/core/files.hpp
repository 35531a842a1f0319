// Writing results so that a failure loses nothing: every file Shrink writes (checkpoints, models,
// masks, JSON) goes through write_file_atomically.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace shrink {

// Writes `bytes` to a temporary file beside `path` whose name is unique to this process, flushes
// it to disk and renames it over `path`. When anything fails (no space, no permission, a folder
// in the way) the temporary file is removed, `path` is left as it was, and shrink::Error says
// what in one line: "no space left writing <path>: <N> bytes needed, <M> free".
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

// The bytes free to an unprivileged writer on the file system holding `path` (or its nearest
// existing parent); -1 when it cannot be told.
int64_t free_bytes(const std::filesystem::path& path);

// "<name>.<pid>.tmp": the temporary name beside `path` that this process writes first.
std::filesystem::path temporary_beside(const std::filesystem::path& path);

// An advisory lock on a folder for as long as this object lives: `<folder>/.shrink.lock`, locked
// with flock and holding the owner's pid. The kernel drops the lock when the process ends, however
// it ends, so a killed run never leaves the folder locked. Creates the folder. Throws
// shrink::Error when another process holds the lock, naming the folder and that process.
class FolderLock {
 public:
  explicit FolderLock(const std::filesystem::path& folder);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

// Why `folder` cannot take a run's results, or "" when it can: it (or the nearest existing folder
// above it, where it will be created) must be a writable folder on a writable file system.
std::string unwritable_folder(const std::filesystem::path& folder);

}  // namespace shrink
