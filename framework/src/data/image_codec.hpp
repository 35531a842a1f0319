// JPEG (libjpeg-turbo's TurboJPEG API) and PNG (libpng) decoding into tensors (private to data/).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace shrink::detail {

// How many channels the image in `file` holds as decoded: 1 for grayscale (with or without
// alpha), 3 for colour. Reads the header only. Throws BadSample naming the file.
int stored_channels(const std::string& file);

// The image in `file` as uint8 [channels, H, W] (channels 1 or 3): colour to gray by the JPEG's
// luma or PIL's ITU-R 601-2 weights (PNG), gray replicated to 3, alpha dropped (as PIL's
// convert does). A JPEG is decoded at the smallest of 1/2, 1/4, 1/8 its size that keeps
// `floor` ([s]: the shorter side at least s; [h, w]: both), full size when `floor` is empty.
// Throws BadSample naming the file and what is wrong.
at::Tensor decode_image(const std::string& file, int channels, const std::vector<int64_t>& floor);

}  // namespace shrink::detail
