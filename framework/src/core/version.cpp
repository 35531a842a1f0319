#include <shrink/core/version.hpp>

#include <torch/version.h>

namespace shrink {

const char* version() { return SHRINK_VERSION_STRING; }

std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

int cxx11_abi() { return _GLIBCXX_USE_CXX11_ABI; }

}  // namespace shrink
