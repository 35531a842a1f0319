// What a quantize call quantizes, shared by the SDK and the host. Torch-free: plain C++ over the
// ABI's constants, so any header of either side can include it.
#pragma once

#include <shrink/plugin_api.h>

#include <cstdint>

namespace shrink {

enum class QuantType : int32_t {
  kInput = SHRINK_QUANT_INPUT,
  kWeight = SHRINK_QUANT_WEIGHT,
  kOutput = SHRINK_QUANT_OUTPUT,
};

// "input", "weight", "output".
inline const char* to_string(QuantType type) {
  switch (type) {
    case QuantType::kInput:
      return "input";
    case QuantType::kWeight:
      return "weight";
    case QuantType::kOutput:
      return "output";
  }
  return "unknown";
}

}  // namespace shrink
