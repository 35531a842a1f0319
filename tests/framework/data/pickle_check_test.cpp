// The look over a pickle stream before LibTorch unpickles it: what the protocol defines passes,
// any length or memo index the stream could not back is refused with its offset.
#include "data/pickle_check.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

std::string check(const std::string& bytes) {
  return shrink::detail::check_pickle(reinterpret_cast<const unsigned char*>(bytes.data()),
                                      bytes.size());
}

// PROTO 2, then `body`, then STOP.
std::string pickle(const std::string& body) { return std::string("\x80\x02", 2) + body + "."; }

TEST(PickleCheckTest, WhatTorchSaveWritesPasses) {
  // The start of a torch.save pickle: a GLOBAL, a memo put, a MARK, a BINUNICODE, a tuple.
  const std::string body =
      std::string("ctorch._utils\n_rebuild_tensor_v2\nq\x00(X\x07\x00\x00\x00", 41) +
      "storageK\x40\x85q\x01t";
  EXPECT_EQ(check(pickle(body)), "");
  EXPECT_EQ(check(pickle(std::string("\x8c\x03"
                                     "abc\x95\x00\x00\x00\x00\x00\x00\x00\x00",
                                     14))),
            "");
}

TEST(PickleCheckTest, ADeclaredLengthPastTheEndIsRefused) {
  // BINUNICODE of 2^31 bytes in a stream of a few: LibTorch would allocate 2 GB first.
  const std::string error =
      check(pickle(std::string("X\x00\x00\x00\x80"
                               "ab",
                               7)));
  EXPECT_NE(error.find("pickle byte 2: declares 2147483648 bytes, 3 follow"), std::string::npos)
      << error;
  EXPECT_NE(check(pickle(std::string("\x8d\xff\xff\xff\xff\xff\xff\xff\xff", 9))), "");
  EXPECT_NE(check(pickle(std::string("\x95\x10\x00\x00\x00\x00\x00\x00\x00", 9))), "");  // FRAME
}

TEST(PickleCheckTest, AMemoIndexNoStreamThisLongCouldHoldIsRefused) {
  // LONG_BINPUT 1904612209, as the fuzzer found: LibTorch reserves 2 x that many entries.
  const std::string error =
      check(pickle(std::string("N"
                               "r\x71\x13\x86\x71",
                               6)));
  EXPECT_NE(error.find("pickle byte 3: memo index 1904612209"), std::string::npos) << error;
  EXPECT_EQ(check(pickle(std::string("Nq\x00h\x00", 5))), "");
}

TEST(PickleCheckTest, UnknownOpcodesAndTruncationAreRefused) {
  EXPECT_NE(check(pickle("\x14")).find("pickle byte 2: unknown opcode 20"), std::string::npos);
  EXPECT_NE(check(std::string("\x80\x02N", 3)).find("no STOP opcode"), std::string::npos);
  EXPECT_NE(check(std::string("\x80\x02"
                              "ctorch",
                              8))
                .find("runs past the end"),
            std::string::npos);
  EXPECT_NE(check(std::string("\x80", 1)).find("runs past the end"), std::string::npos);
}

}  // namespace
