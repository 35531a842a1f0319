// Small helpers the test files share.
#pragma once

#include <shrink/core/error.hpp>

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace shrink::test {

// The message of the shrink::Error `body` throws, or "<no error>".
template <typename Body>
std::string error_of(Body&& body) {
  try {
    body();
  } catch (const shrink::Error& e) {
    return e.what();
  }
  return "<no error>";
}

// A temporary folder path of this process and the running test, "<tmp>/<prefix>_<pid>_<test>",
// so that tests running side by side (ctest -j) never share one. Not created.
inline std::filesystem::path test_dir(const std::string& prefix) {
  return std::filesystem::temp_directory_path() /
         (prefix + "_" + std::to_string(::getpid()) + "_" +
          ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

}  // namespace shrink::test
