// The checks a plugin file gets before dlopen sees it.
#pragma once

#include <string>

namespace shrink {

// Checks that `file` is a complete shared object for this machine: glibc maps a truncated library
// and then dies of SIGBUS, so a corrupt file must be caught here. Returns "" or what is wrong.
std::string check_shared_library(const std::string& file);

}  // namespace shrink
