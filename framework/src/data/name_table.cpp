#include "data/name_table.hpp"

#include <algorithm>
#include <stdexcept>

namespace shrink::detail {

void NameTable::put_varint(uint64_t v) {
  uint8_t* out = chunks_.back().get();
  while (v >= 0x80) {
    out[used_++] = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  out[used_++] = static_cast<uint8_t>(v);
}

void NameTable::add(const std::string& name) {
  if (name.size() > kMaxName) throw std::length_error("a name longer than 4096 bytes");
  const bool first = count_ % kBlock == 0;
  if (first) {
    // A block never spans two chunks: room for 16 of the longest entries, or a new chunk.
    if (kChunk - used_ < kBlock * (kMaxName + 4)) {
      // Not zero-filled: only the pages written become resident.
      chunks_.push_back(std::unique_ptr<uint8_t[]>(new uint8_t[kChunk]));
      used_ = 0;
    }
    blocks_.push_back((static_cast<uint64_t>(chunks_.size() - 1) << kChunkBits) | used_);
  }
  const std::size_t before = used_;
  std::size_t shared = 0;
  if (!first) {
    const std::size_t most = std::min(name.size(), last_.size());
    while (shared < most && name[shared] == last_[shared]) ++shared;
  }
  put_varint(shared);
  put_varint(name.size() - shared);
  std::copy(name.begin() + static_cast<std::ptrdiff_t>(shared), name.end(),
            chunks_.back().get() + used_);
  used_ += name.size() - shared;
  written_ += used_ - before;
  last_ = name;
  ++count_;
}

std::string NameTable::get(int64_t i) const {
  const uint64_t start = blocks_[static_cast<std::size_t>(i / kBlock)];
  const uint8_t* p = chunks_[start >> kChunkBits].get() + (start & (kChunk - 1));
  const auto read_varint = [&p] {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      const uint8_t byte = *p++;
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (byte < 0x80) return v;
    }
  };
  std::string name;
  for (int64_t k = 0; k <= i % kBlock; ++k) {
    const std::size_t shared = read_varint(), rest = read_varint();
    name.resize(shared);
    name.append(reinterpret_cast<const char*>(p), rest);
    p += rest;
  }
  return name;
}

std::size_t NameTable::bytes() const { return written_ + blocks_.size() * sizeof(uint64_t); }

}  // namespace shrink::detail
