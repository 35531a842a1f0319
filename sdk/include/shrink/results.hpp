// What a plugin hands back to the host, in one definition shared by the SDK and the host: a
// quantizer site's calibration (NNI's calibration_config) and a masker's masks. Needs only ATen's
// tensor type, not the whole of LibTorch.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <string>

namespace shrink {

// Per-site calibration. `scale` and `zero_point` are float tensors of one element (per tensor) or
// one per channel (per channel: dim 0 for weights, dim 1 for activations); an undefined scale
// leaves the site in float in the exported model.
struct Calibration {
  at::Tensor scale;
  at::Tensor zero_point;
  int quant_bits = 0;
  std::string quant_dtype;
  std::string quant_scheme;
  double tracked_min = std::numeric_limits<double>::quiet_NaN();
  double tracked_max = std::numeric_limits<double>::quiet_NaN();
  int64_t quant_min = 0;  // the integer range the fake-quant clamps to
  int64_t quant_max = 0;
};

// NNI's calc_mask result: 0/1 tensors of the weight's (and bias's) shape.
struct Masks {
  at::Tensor weight_mask;
  at::Tensor bias_mask;  // may stay undefined
};

}  // namespace shrink
