#include <shrink/core/error.hpp>
#include <shrink/core/files.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>

namespace shrink {

namespace fs = std::filesystem;

namespace {

// The one line for a failed write of `bytes` bytes to `path`, errno `err`.
[[noreturn]] void write_failed(const fs::path& path, std::size_t bytes, int err) {
  if (err == EDQUOT) {
    throw Error("disk quota exceeded writing " + path.string() + ": " + std::to_string(bytes) +
                " bytes needed");
  }
  if (err == ENOSPC) {
    const int64_t free = free_bytes(path);
    throw Error("no space left writing " + path.string() + ": " + std::to_string(bytes) +
                " bytes needed" + (free >= 0 ? ", " + std::to_string(free) + " free" : ""));
  }
  throw Error(path.string() + ": cannot be written: " + std::strerror(err));
}

// Writes all of `bytes` to `fd` and flushes them to disk; the errno of the first failure, or 0.
int write_all(int fd, std::string_view bytes) {
  const char* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  // tmpfs and most file systems report a full disk at write(); others only at fsync or close.
  return ::fsync(fd) == 0 ? 0 : errno;
}

}  // namespace

fs::path temporary_beside(const fs::path& path) {
  return path.parent_path() /
         ("." + path.filename().string() + "." + std::to_string(::getpid()) + ".tmp");
}

int64_t free_bytes(const fs::path& path) {
  fs::path existing = path;
  std::error_code ec;
  while (!existing.empty() && !fs::exists(existing, ec)) existing = existing.parent_path();
  struct statvfs s {};
  if (::statvfs(existing.empty() ? "." : existing.c_str(), &s) != 0) return -1;
  return static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
}

void write_file_atomically(const fs::path& path, std::string_view bytes) {
  const fs::path tmp = temporary_beside(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) write_failed(path, bytes.size(), errno);
  int err = write_all(fd, bytes);
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    write_failed(path, bytes.size(), err);
  }
}

FolderLock::FolderLock(const fs::path& folder) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  const fs::path file = folder / ".shrink.lock";
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(file.string() + ": cannot be created: " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string owner;
    std::getline(std::ifstream(file), owner);
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK)
      throw Error(file.string() + ": cannot be locked: " + std::strerror(err));
    throw Error(folder.string() + ": another run (pid " + (owner.empty() ? "unknown" : owner) +
                ") is writing its results here; wait for it to end or choose another --out");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::write(fd_, pid.data(), pid.size()) < 0) {
    // The pid is for the other run's message only; the lock holds without it.
  }
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

std::string unwritable_folder(const fs::path& folder) {
  std::error_code ec;
  fs::path existing = folder.empty() ? fs::path(".") : folder;
  while (!existing.empty() && !fs::exists(existing, ec)) existing = existing.parent_path();
  if (existing.empty()) existing = ".";
  if (!fs::is_directory(existing, ec)) return existing.string() + " is a file, not a folder";
  if (::access(existing.c_str(), W_OK | X_OK) != 0) {
    return existing.string() + " is not writable (" + std::strerror(errno) + ")";
  }
  return "";
}

}  // namespace shrink
