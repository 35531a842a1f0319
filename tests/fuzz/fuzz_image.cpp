// libFuzzer entry for the 'image' target (targets.hpp); built and run by scripts/fuzz.sh.
#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  shrink_fuzz::image(data, size);
  return 0;
}
