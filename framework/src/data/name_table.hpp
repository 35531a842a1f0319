// Many file names in little memory (private to data/): what lets an image folder of a million
// files cost a few megabytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace shrink::detail {

// Names appended in order and read back by index. Front-coded in blocks of 16: each name stores
// how many leading bytes it shares with the one before and the rest, so sorted paths
// ("cat/00001.jpg", "cat/00002.jpg") take a few bytes each; a block's first name is whole, so a
// read decodes at most 16 entries. Stored in 1 MiB chunks that are never moved: listing a large
// folder grows the table without copying it.
class NameTable {
 public:
  static constexpr std::size_t kMaxName = 4096;  // longer is refused by add()

  void add(const std::string& name);  // throws std::length_error past kMaxName
  std::string get(int64_t i) const;
  int64_t size() const { return count_; }
  std::size_t bytes() const;  // what the entries and the block index take (chunks are 1 MiB)

 private:
  static constexpr int kBlock = 16;
  static constexpr int kChunkBits = 20;
  static constexpr std::size_t kChunk = std::size_t{1} << kChunkBits;
  void put_varint(uint64_t v);

  std::vector<std::unique_ptr<uint8_t[]>> chunks_;
  std::size_t used_ = kChunk;     // bytes used in the last chunk (full: none yet)
  std::vector<uint64_t> blocks_;  // where each block starts: chunk << kChunkBits | offset
  std::string last_;              // the name added last
  int64_t count_ = 0;
  std::size_t written_ = 0;  // bytes of entries
};

}  // namespace shrink::detail
