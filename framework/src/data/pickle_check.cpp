#include "data/pickle_check.hpp"

#include <cstdint>
#include <string>

namespace shrink::detail {

namespace {

// What follows an opcode: nothing, a fixed number of bytes, a little-endian length of that many
// bytes and then the payload, a memo index of that many bytes, or newline-terminated text lines.
enum class Argument { kNone, kFixed, kLength, kMemo, kLines };

struct Opcode {
  Argument argument = Argument::kNone;
  int bytes = 0;  // kFixed, kLength, kMemo: how many; kLines: how many lines
  bool known = false;
};

struct OpcodeTable {
  Opcode at[256];
  void set(unsigned char code, Argument argument, int bytes = 0) {
    at[code] = {argument, bytes, true};
  }

  OpcodeTable() {
    // Protocol 0 and 1 (Python's Lib/pickletools.py documents each).
    for (char c : std::string("(.012NQRabd}elo]st)u"))
      set(static_cast<unsigned char>(c), Argument::kNone);
    for (char c : std::string("FILPSVgp")) set(static_cast<unsigned char>(c), Argument::kLines, 1);
    set('c', Argument::kLines, 2);   // GLOBAL module\nname\n
    set('i', Argument::kLines, 2);   // INST
    set('J', Argument::kFixed, 4);   // BININT
    set('K', Argument::kFixed, 1);   // BININT1
    set('M', Argument::kFixed, 2);   // BININT2
    set('G', Argument::kFixed, 8);   // BINFLOAT
    set('T', Argument::kLength, 4);  // BINSTRING
    set('U', Argument::kLength, 1);  // SHORT_BINSTRING
    set('X', Argument::kLength, 4);  // BINUNICODE
    set('h', Argument::kMemo, 1);    // BINGET
    set('j', Argument::kMemo, 4);    // LONG_BINGET
    set('q', Argument::kMemo, 1);    // BINPUT
    set('r', Argument::kMemo, 4);    // LONG_BINPUT
    // Protocol 2.
    set(0x80, Argument::kFixed, 1);  // PROTO
    set(0x82, Argument::kFixed, 1);  // EXT1
    set(0x83, Argument::kFixed, 2);  // EXT2
    set(0x84, Argument::kFixed, 4);  // EXT4
    for (unsigned char c : {0x81, 0x85, 0x86, 0x87, 0x88, 0x89}) set(c, Argument::kNone);
    set(0x8a, Argument::kLength, 1);  // LONG1
    set(0x8b, Argument::kLength, 4);  // LONG4
    // Protocol 3.
    set('B', Argument::kLength, 4);  // BINBYTES
    set('C', Argument::kLength, 1);  // SHORT_BINBYTES
    // Protocol 4 and 5.
    set(0x8c, Argument::kLength, 1);  // SHORT_BINUNICODE
    set(0x8d, Argument::kLength, 8);  // BINUNICODE8
    set(0x8e, Argument::kLength, 8);  // BINBYTES8
    for (unsigned char c : {0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x97, 0x98})
      set(c, Argument::kNone);
    set(0x95, Argument::kFixed, 8);   // FRAME (its length is checked below)
    set(0x96, Argument::kLength, 8);  // BYTEARRAY8
  }
};

uint64_t little(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string at_offset(std::size_t offset, const std::string& what) {
  return "pickle byte " + std::to_string(offset) + ": " + what;
}

}  // namespace

std::string check_pickle(const unsigned char* data, std::size_t size) {
  static const OpcodeTable table;
  std::size_t at = 0;
  while (at < size) {
    const std::size_t start = at;
    const unsigned char code = data[at++];
    const Opcode& op = table.at[code];
    if (!op.known) return at_offset(start, "unknown opcode " + std::to_string(code));
    const std::size_t left = size - at;
    if (op.argument == Argument::kLines) {
      for (int line = 0; line < op.bytes; ++line) {
        while (at < size && data[at] != '\n') ++at;
        if (at == size) return at_offset(start, "a text argument runs past the end");
        ++at;
      }
    } else if (op.argument != Argument::kNone) {
      if (left < static_cast<std::size_t>(op.bytes))
        return at_offset(start, "an argument runs past the end");
      const uint64_t value = little(data + at, op.bytes);
      at += op.bytes;
      // A memo index names one of the entries written before it, each taking two bytes or more.
      if (op.argument == Argument::kMemo && value > size / 2)
        return at_offset(start, "memo index " + std::to_string(value) + " in a stream of " +
                                    std::to_string(size) + " bytes");
      const bool frame = code == 0x95;
      if ((op.argument == Argument::kLength || frame) && value > size - at)
        return at_offset(start, "declares " + std::to_string(value) + " bytes, " +
                                    std::to_string(size - at) + " follow");
      if (op.argument == Argument::kLength) at += value;
    }
    if (code == '.') return "";  // STOP
  }
  return "no STOP opcode: the stream is truncated";
}

}  // namespace shrink::detail
