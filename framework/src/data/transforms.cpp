#include <shrink/core/error.hpp>
#include <shrink/data/transforms.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace shrink {

namespace {

uint64_t mix(uint64_t z) {  // splitmix64's finalizer
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Python's round(): halves to even, as torchvision's parameters are computed.
int64_t round_half_even(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

}  // namespace

uint64_t SampleRng::seed_of(uint64_t run_seed, int64_t epoch, int64_t sample) {
  return mix(mix(mix(run_seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(sample));
}

uint64_t SampleRng::next() {
  state_ += 0x9e3779b97f4a7c15ULL;
  return mix(state_);
}

double SampleRng::uniform(double low, double high) {
  const double unit = static_cast<double>(next() >> 11) * 0x1.0p-53;
  return low + (high - low) * unit;
}

int64_t SampleRng::integer(int64_t low, int64_t high) {
  if (high <= low + 1) return low;
  return low + static_cast<int64_t>(next() % static_cast<uint64_t>(high - low));
}

namespace transforms {

at::Tensor to_float(const at::Tensor& image) {
  if (image.scalar_type() == at::kFloat) return image;
  if (image.scalar_type() == at::kByte) return image.to(at::kFloat).div_(255.0);
  return image.to(at::kFloat);
}

at::Tensor resize(const at::Tensor& image, const std::vector<int64_t>& size, bool antialias) {
  const int64_t h = image.size(-2), w = image.size(-1);
  int64_t out_h = 0, out_w = 0;
  if (size.size() == 1) {
    const int64_t s = size[0];
    const bool portrait = h > w;  // torchvision's _compute_resized_output_size
    const int64_t shorter = portrait ? w : h, longer = portrait ? h : w;
    const int64_t other = static_cast<int64_t>(
        static_cast<double>(s) * static_cast<double>(longer) / static_cast<double>(shorter));
    out_h = portrait ? other : s;
    out_w = portrait ? s : other;
  } else {
    out_h = size[0];
    out_w = size[1];
  }
  if (out_h == h && out_w == w) return to_float(image);
  // Contiguous [C, H, W], as torchvision has it: the channels-last kernel (a decoded image is
  // HWC in memory) rounds bilinear differently in the last bit.
  const at::Tensor batch = to_float(image).contiguous().unsqueeze(0);
  const at::Tensor out = antialias ? at::_upsample_bilinear2d_aa(batch, {out_h, out_w}, false)
                                   : at::upsample_bilinear2d(batch, {out_h, out_w}, false);
  return out.squeeze(0);
}

at::Tensor pad(const at::Tensor& image, const std::vector<int64_t>& padding) {
  if (std::all_of(padding.begin(), padding.end(), [](int64_t p) { return p == 0; })) return image;
  return at::constant_pad_nd(image, {padding[0], padding[2], padding[1], padding[3]}, 0);
}

at::Tensor crop(const at::Tensor& image, const CropBox& b) {
  const int64_t h = image.size(-2), w = image.size(-1);
  const int64_t top = std::max<int64_t>(b.top, 0), left = std::max<int64_t>(b.left, 0);
  const int64_t bottom = std::min(b.top + b.height, h), right = std::min(b.left + b.width, w);
  at::Tensor inside = image.narrow(-2, top, std::max<int64_t>(bottom - top, 0))
                          .narrow(-1, left, std::max<int64_t>(right - left, 0));
  if (top == b.top && left == b.left && bottom == b.top + b.height && right == b.left + b.width) {
    return inside;
  }
  return transforms::pad(
      inside, {left - b.left, top - b.top, b.left + b.width - right, b.top + b.height - bottom});
}

at::Tensor center_crop(const at::Tensor& image, int64_t height, int64_t width) {
  const int64_t h = image.size(-2), w = image.size(-1);
  if (height > h || width > w) {  // torchvision pads first, then crops the centre
    const int64_t pl = width > w ? (width - w) / 2 : 0, pt = height > h ? (height - h) / 2 : 0;
    const int64_t pr = width > w ? (width - w + 1) / 2 : 0;
    const int64_t pb = height > h ? (height - h + 1) / 2 : 0;
    const at::Tensor padded = transforms::pad(image, {pl, pt, pr, pb});
    if (padded.size(-2) == height && padded.size(-1) == width) return padded;
    return center_crop(padded, height, width);
  }
  const int64_t top = round_half_even(static_cast<double>(h - height) / 2.0);
  const int64_t left = round_half_even(static_cast<double>(w - width) / 2.0);
  return crop(image, {top, left, height, width});
}

at::Tensor hflip(const at::Tensor& image) { return image.flip({-1}); }

at::Tensor to_channels(const at::Tensor& image, int64_t channels) {
  const int64_t c = image.size(-3);
  if (c == channels) return image;
  SHRINK_CHECK(c == 1, "cannot make " << c << " channels into " << channels
                                      << " (only one channel is replicated)");
  std::vector<int64_t> sizes = image.sizes().vec();
  sizes[sizes.size() - 3] = channels;
  return image.expand(sizes);
}

at::Tensor normalize(const at::Tensor& image, const std::vector<double>& mean,
                     const std::vector<double>& std) {
  const int64_t c = image.size(-3);  // [C, H, W] or a batch of them
  SHRINK_CHECK(static_cast<int64_t>(mean.size()) == c && static_cast<int64_t>(std.size()) == c,
               mean.size() << " means and " << std.size() << " stds for " << c << " channel"
                           << (c == 1 ? "" : "s"));
  const at::Tensor m = at::tensor(mean, at::kFloat).view({c, 1, 1});
  const at::Tensor s = at::tensor(std, at::kFloat).view({c, 1, 1});
  return to_float(image).sub(m).div_(s);
}

CropBox random_resized_crop_box(int64_t height, int64_t width, const std::vector<double>& scale,
                                const std::vector<double>& ratio, SampleRng& rng) {
  const double area = static_cast<double>(height * width);
  const double log_low = std::log(ratio[0]), log_high = std::log(ratio[1]);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.uniform(scale[0], scale[1]);
    const double aspect = std::exp(rng.uniform(log_low, log_high));
    const int64_t w = round_half_even(std::sqrt(target * aspect));
    const int64_t h = round_half_even(std::sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int64_t top = rng.integer(0, height - h + 1);
      const int64_t left = rng.integer(0, width - w + 1);
      return {top, left, h, w};
    }
  }
  // torchvision's fallback: the centre, at the nearest allowed aspect ratio.
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  int64_t w = width, h = height;
  if (in_ratio < ratio[0]) {
    h = round_half_even(static_cast<double>(w) / ratio[0]);
  } else if (in_ratio > ratio[1]) {
    w = round_half_even(static_cast<double>(h) * ratio[1]);
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

CropBox random_crop_box(int64_t height, int64_t width, int64_t crop_h, int64_t crop_w,
                        SampleRng& rng) {
  SHRINK_CHECK(crop_h <= height && crop_w <= width,
               "a crop of " << crop_h << "x" << crop_w << " from an image of " << height << "x"
                            << width << " (after its padding)");
  if (height == crop_h && width == crop_w) return {0, 0, height, width};
  const int64_t top = rng.integer(0, height - crop_h + 1);
  const int64_t left = rng.integer(0, width - crop_w + 1);
  return {top, left, crop_h, crop_w};
}

}  // namespace transforms

namespace {

at::Tensor apply_one(const TransformSpec& t, const at::Tensor& x, SampleRng& rng) {
  namespace tf = transforms;
  if (t.name == "resize") return tf::resize(x, t.size, t.antialias);
  if (t.name == "center_crop") return tf::center_crop(x, t.size[0], t.size[1]);
  if (t.name == "random_resized_crop") {
    const CropBox box = tf::random_resized_crop_box(x.size(-2), x.size(-1), t.scale, t.ratio, rng);
    return tf::resize(tf::crop(x, box), t.size, t.antialias);
  }
  if (t.name == "random_crop") {
    const at::Tensor padded = tf::pad(x, t.padding);
    return tf::crop(
        padded, tf::random_crop_box(padded.size(-2), padded.size(-1), t.size[0], t.size[1], rng));
  }
  if (t.name == "random_horizontal_flip") return rng.uniform(0.0, 1.0) < t.p ? tf::hflip(x) : x;
  if (t.name == "to_channels") return tf::to_channels(x, t.channels);
  if (t.name == "normalize") return tf::normalize(x, t.mean, t.std);
  throw Error(t.where + ": unknown transform " + t.name);
}

}  // namespace

namespace {

// Transforms that treat every pixel alike and keep the image's size: run once on a whole batch.
bool per_pixel(const TransformSpec& t) { return t.name == "normalize" || t.name == "to_channels"; }

at::Tensor run_named(const TransformSpec& t, const at::Tensor& x, SampleRng& rng) {
  try {
    return apply_one(t, x, rng);
  } catch (const Error& e) {
    throw Error((t.where.empty() ? "" : t.where + ": ") + (t.key.empty() ? t.name : t.key) + ": " +
                e.what());
  }
}

}  // namespace

std::size_t Pipeline::batched_from() const {
  std::size_t k = specs_.size();
  while (k > 0 && per_pixel(specs_[k - 1])) --k;
  return k;
}

at::Tensor Pipeline::apply_each(at::Tensor image, uint64_t seed) const {
  if (image.dim() == 2) image = image.unsqueeze(0);
  SHRINK_CHECK(image.dim() == 3,
               "a sample of shape " << image.sizes() << ", expected [C, H, W] or [H, W]");
  SampleRng rng(seed);
  const std::size_t end = batched_from();
  for (std::size_t k = 0; k < end; ++k) image = run_named(specs_[k], image, rng);
  return image;
}

at::Tensor Pipeline::apply_batch(at::Tensor batch) const {
  SampleRng unused(0);
  batch = transforms::to_float(batch);
  for (std::size_t k = batched_from(); k < specs_.size(); ++k) {
    batch = run_named(specs_[k], batch, unused);
  }
  return batch;
}

at::Tensor Pipeline::apply(at::Tensor image, uint64_t seed) const {
  return apply_batch(apply_each(std::move(image), seed).unsqueeze(0)).squeeze(0);
}

std::vector<int64_t> Pipeline::decode_floor() const {
  if (specs_.empty() || specs_.front().name != "resize") return {};
  return specs_.front().size;
}

}  // namespace shrink
