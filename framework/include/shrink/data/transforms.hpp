// A split's preparation: torchvision's transforms, with its definitions, on one sample at a time.
// Images are [C, H, W]; uint8 ones become float in [0, 1] (x / 255) where a transform computes
// (resize, normalize) and at the end, as torchvision's convert_image_dtype does.
#pragma once

#include <shrink/config/data_options.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace shrink {

// The random draws of one sample's transforms: a small generator seeded per (run seed, epoch,
// sample), so that a sample's augmentation does not depend on which thread prepares it.
class SampleRng {
 public:
  explicit SampleRng(uint64_t seed) : state_(seed) {}
  static uint64_t seed_of(uint64_t run_seed, int64_t epoch, int64_t sample);
  double uniform(double low, double high);     // [low, high)
  int64_t integer(int64_t low, int64_t high);  // [low, high), torch.randint's range

 private:
  uint64_t next();
  uint64_t state_;
};

struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

namespace transforms {

at::Tensor to_float(const at::Tensor& image);  // uint8 -> x / 255; float as it is
// torchvision.transforms.functional.resize: `size` [h, w], or [s] (the smaller edge becomes s,
// the other int(s * long / short)); bilinear, align_corners=False.
at::Tensor resize(const at::Tensor& image, const std::vector<int64_t>& size, bool antialias);
// F.crop: a box partly outside the image is filled with zeros there.
at::Tensor crop(const at::Tensor& image, const CropBox& box);
at::Tensor center_crop(const at::Tensor& image, int64_t height, int64_t width);
at::Tensor pad(const at::Tensor& image, const std::vector<int64_t>& padding);  // l, t, r, b; 0s
at::Tensor hflip(const at::Tensor& image);
at::Tensor to_channels(const at::Tensor& image, int64_t channels);
at::Tensor normalize(const at::Tensor& image, const std::vector<double>& mean,
                     const std::vector<double>& std);
// RandomResizedCrop.get_params and RandomCrop.get_params, drawing from `rng`.
CropBox random_resized_crop_box(int64_t height, int64_t width, const std::vector<double>& scale,
                                const std::vector<double>& ratio, SampleRng& rng);
CropBox random_crop_box(int64_t height, int64_t width, int64_t crop_h, int64_t crop_w,
                        SampleRng& rng);

}  // namespace transforms

class Pipeline {
 public:
  Pipeline() = default;
  explicit Pipeline(std::vector<TransformSpec> specs) : specs_(std::move(specs)) {}
  // `image` ([C, H, W] or [H, W]) prepared: float32 [C, H, W]. `seed` fixes the random draws.
  // A transform that cannot apply (normalize's channel count, to_channels of 2 channels) throws
  // shrink::Error naming it.
  at::Tensor apply(at::Tensor image, uint64_t seed) const;
  // apply() in two halves, for a loader: each sample through the transforms up to the trailing
  // per-pixel ones (normalize, to_channels; the result may still be uint8), then a batch of those
  // through the rest at once ([B, C, H, W] -> float32), as exact as apply() and cheaper.
  at::Tensor apply_each(at::Tensor image, uint64_t seed) const;
  at::Tensor apply_batch(at::Tensor batch) const;
  // The smallest [h, w] a scaled decode may give an image first resized by this pipeline (empty
  // when the first transform is not a resize).
  std::vector<int64_t> decode_floor() const;
  const std::vector<TransformSpec>& specs() const { return specs_; }

 private:
  std::size_t batched_from() const;  // the first of the trailing per-pixel transforms
  std::vector<TransformSpec> specs_;
};

}  // namespace shrink
