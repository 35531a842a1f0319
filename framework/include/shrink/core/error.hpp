// Errors inside the host: one exception type whose message is the one line a user sees.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace shrink {

// A user-facing failure: bad input, a broken plugin, an unsupported model. The message names the
// file, key or value and what was expected; the CLI prints it as one line and exits non-zero.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace shrink

// Throws shrink::Error with a streamed message when `cond` is false:
//   SHRINK_CHECK(bits >= 2, "quant_bits is " << bits << ", expected 2..8");
#define SHRINK_CHECK(cond, ...)                          \
  do {                                                   \
    if (!(cond)) {                                       \
      std::ostringstream shrink_check_stream_;           \
      shrink_check_stream_ << __VA_ARGS__;               \
      throw ::shrink::Error(shrink_check_stream_.str()); \
    }                                                    \
  } while (0)
