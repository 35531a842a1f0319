#include "data/zip_check.hpp"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>

namespace shrink::detail {

namespace {

constexpr uint32_t kEndOfDirectory = 0x06054b50;
constexpr uint32_t kDirectoryEntry = 0x02014b50;
constexpr double kDeflateRatio = 1032;  // deflate's best: what a byte can expand to

uint64_t little(const std::string& b, std::size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

// The end-of-directory record's offset: it is 22 bytes plus a comment of up to 64 KiB from the end.
std::size_t find_end_of_directory(const std::string& tail) {
  if (tail.size() < 22) return std::string::npos;
  for (std::size_t at = tail.size() - 22 + 1; at-- > 0;) {
    if (little(tail, at, 4) == kEndOfDirectory) return at;
  }
  return std::string::npos;
}

}  // namespace

std::string check_zip_directory(const std::string& file) {
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  if (!in) return "cannot be read";
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  const uint64_t tail_size = std::min<uint64_t>(size, 22 + 65535);
  std::string tail(tail_size, '\0');
  in.seekg(static_cast<std::streamoff>(size - tail_size));
  in.read(&tail[0], static_cast<std::streamsize>(tail_size));
  const std::size_t eocd = find_end_of_directory(tail);
  if (eocd == std::string::npos) return "not a zip file (no end of directory)";
  const uint64_t entries = little(tail, eocd + 10, 2);
  const uint64_t directory_size = little(tail, eocd + 12, 4);
  const uint64_t directory_offset = little(tail, eocd + 16, 4);
  // ZIP64 markers: only a file past 4 GiB (or 65535 entries) needs them; the fields are then
  // elsewhere, and LibTorch checks them itself.
  if (directory_offset == 0xffffffff || directory_size == 0xffffffff || entries == 0xffff) {
    return size > 0xffffffffULL ? "" : "zip64 markers in a file under 4 GiB";
  }
  if (directory_offset + directory_size > size) return "its directory lies past the end";
  std::string directory(directory_size, '\0');
  in.seekg(static_cast<std::streamoff>(directory_offset));
  in.read(&directory[0], static_cast<std::streamsize>(directory_size));
  if (static_cast<uint64_t>(in.gcount()) != directory_size) return "its directory cannot be read";
  std::size_t at = 0;
  for (uint64_t i = 0; i < entries; ++i) {
    if (at + 46 > directory.size() || little(directory, at, 4) != kDirectoryEntry) {
      return "directory entry " + std::to_string(i) + " is corrupt";
    }
    const uint64_t compressed = little(directory, at + 20, 4);
    const uint64_t uncompressed = little(directory, at + 24, 4);
    const uint64_t local = little(directory, at + 42, 4);
    if (local + 30 + compressed > size ||
        static_cast<double>(uncompressed) > kDeflateRatio * static_cast<double>(compressed) + 64) {
      return "directory entry " + std::to_string(i) + " declares more than the file holds";
    }
    at += 46 + little(directory, at + 28, 2) + little(directory, at + 30, 2) +
          little(directory, at + 32, 2);
  }
  return "";
}

}  // namespace shrink::detail
