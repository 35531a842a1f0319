// libFuzzer entry for the 'idx' target (targets.hpp); built and run by scripts/fuzz.sh.
#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  shrink_fuzz::idx(data, size);
  return 0;
}
