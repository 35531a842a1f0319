// Small helpers for the host's checks of what plugins return: names of dtypes and shapes as a user
// reads them, and a count of non-finite values.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <sstream>
#include <string>

namespace shrink::detail {

// "float32", "float64", "int8", ... (PyTorch's Python names).
inline std::string dtype_name(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return "float32";
    case at::kDouble:
      return "float64";
    case at::kHalf:
      return "float16";
    case at::kBFloat16:
      return "bfloat16";
    case at::kChar:
      return "int8";
    case at::kByte:
      return "uint8";
    case at::kShort:
      return "int16";
    case at::kInt:
      return "int32";
    case at::kLong:
      return "int64";
    case at::kBool:
      return "bool";
    default:
      return c10::toString(type);
  }
}

// "[8, 4, 3, 3]"; "[]" for a scalar.
inline std::string shape_text(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

// How many elements are NaN or infinite (0 for integer and bool tensors). A host sync.
inline int64_t count_non_finite(const at::Tensor& t) {
  if (!t.defined() || !at::isFloatingType(t.scalar_type())) return 0;
  return at::logical_not(at::isfinite(t)).sum().item<int64_t>();
}

}  // namespace shrink::detail
