// libFuzzer entry for the 'config_list' target (targets.hpp); built and run by scripts/fuzz.sh.
#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  shrink_fuzz::config_list(data, size);
  return 0;
}
