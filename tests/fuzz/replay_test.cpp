// Every input the fuzzers keep (tests/fuzz/regressions/<target>/: inputs that once crashed, kept
// once fixed) and the seed corpus (tests/fuzz/seeds/<target>/) replayed through the same targets in
// the normal test run: read or refused in one line, nothing else. A seed named bad_* must be
// refused, any other seed read (so that the fuzzers start from inputs that go deep).
#include "targets.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#ifndef SHRINK_FUZZ_DIR
#error "SHRINK_FUZZ_DIR: tests/fuzz"
#endif

namespace fs = std::filesystem;

TEST(FuzzReplayTest, KeptInputsAreReadOrRefusedInOneLine) {
  int replayed = 0;
  for (const shrink_fuzz::Target& target : shrink_fuzz::targets()) {
    for (const char* kind : {"regressions", "seeds"}) {
      const fs::path dir = fs::path(SHRINK_FUZZ_DIR) / kind / target.name;
      if (!fs::is_directory(dir)) continue;
      for (const auto& entry : fs::directory_iterator(dir)) {
        std::ifstream in(entry.path(), std::ios::binary);
        const std::string bytes{std::istreambuf_iterator<char>(in), {}};
        bool read = false;
        EXPECT_NO_THROW(
            read = target.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()))
            << target.name << ": " << entry.path();
        if (std::string(kind) == "seeds") {
          const bool bad = entry.path().filename().string().rfind("bad_", 0) == 0;
          EXPECT_EQ(read, !bad) << target.name << ": " << entry.path();
        }
        ++replayed;
      }
    }
  }
  EXPECT_GT(replayed, 5) << "no seeds found under " << SHRINK_FUZZ_DIR;
}
