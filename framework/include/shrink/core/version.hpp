// Shrink's own version and the build facts a plugin is checked against.
#pragma once

#include <string>

namespace shrink {

// "0.1.0"
const char* version();
// LibTorch version the host was built with, "1.13.1".
std::string torch_version();
// Value of _GLIBCXX_USE_CXX11_ABI the host was built with.
int cxx11_abi();

}  // namespace shrink
