#include "data/image_codec.hpp"

#include <shrink/data/source.hpp>

#include <ATen/ATen.h>
#include <png.h>
#include <turbojpeg.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace shrink::detail {
namespace {

// The file's bytes, into a buffer each thread keeps (no allocation per image once it has grown).
const std::vector<unsigned char>& read_file(const std::string& file) {
  thread_local std::vector<unsigned char> buffer;
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw BadSample(file + ": cannot be read (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw BadSample(file + ": not a regular file");
  }
  if (st.st_size > (int64_t{1} << 30)) {
    ::close(fd);
    throw BadSample(file + ": " + std::to_string(st.st_size) + " bytes, more than an image file " +
                    "has (1 GiB)");
  }
  buffer.resize(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < buffer.size()) {
    const ssize_t got = ::read(fd, buffer.data() + done, buffer.size() - done);
    if (got <= 0) {
      ::close(fd);
      throw BadSample(file + ": read failed after " + std::to_string(done) + " bytes");
    }
    done += static_cast<std::size_t>(got);
  }
  ::close(fd);
  return buffer;
}

bool is_jpeg(const std::vector<unsigned char>& b) {
  return b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
}
bool is_png(const std::vector<unsigned char>& b) {
  return b.size() >= 8 && png_sig_cmp(b.data(), 0, 8) == 0;
}

// One TurboJPEG decompressor per thread: a handle is not safe to share.
class Jpeg {
 public:
  Jpeg() : handle_(tjInitDecompress()) {}
  ~Jpeg() {
    if (handle_ != nullptr) tjDestroy(handle_);
  }
  Jpeg(const Jpeg&) = delete;
  Jpeg& operator=(const Jpeg&) = delete;
  static tjhandle get() { return local().handle_; }
  // After an error the handle's libjpeg state is left mid-call and every later call on it fails
  // ("Improper call to JPEG library in state ..."): a fresh one for the next image.
  static void reset() {
    Jpeg& jpeg = local();
    tjDestroy(jpeg.handle_);
    jpeg.handle_ = tjInitDecompress();
  }
  [[noreturn]] static void fail(const std::string& line) {
    reset();
    throw BadSample(line);
  }

 private:
  static Jpeg& local() {
    thread_local Jpeg jpeg;
    return jpeg;
  }
  tjhandle handle_;
};

struct JpegHeader {
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
};

// PIL's bound for a decompression bomb: a small file whose header promises more pixels is refused
// before anything is allocated.
constexpr int64_t kMaxPixels = 178956970;

void check_pixels(int64_t width, int64_t height, const std::string& file) {
  if (width * height <= kMaxPixels) return;
  throw BadSample(file + ": " + std::to_string(width) + "x" + std::to_string(height) +
                  " pixels, more than " + std::to_string(kMaxPixels) +
                  " (PIL's decompression-bomb limit)");
}

JpegHeader jpeg_header(const std::vector<unsigned char>& b, const std::string& file) {
  JpegHeader h;
  if (tjDecompressHeader3(Jpeg::get(), b.data(), static_cast<unsigned long>(b.size()), &h.width,
                          &h.height, &h.subsampling, &h.colorspace) != 0) {
    Jpeg::fail(file + ": not a readable JPEG (" + tjGetErrorStr2(Jpeg::get()) + ")");
  }
  if (h.colorspace == TJCS_CMYK || h.colorspace == TJCS_YCCK) {
    throw BadSample(file + ": a CMYK JPEG; Shrink reads gray and colour (YCbCr, RGB) JPEGs");
  }
  check_pixels(h.width, h.height, file);
  return h;
}

// The smallest scaling factor <= 1 whose output keeps `floor`.
tjscalingfactor jpeg_scale(int width, int height, const std::vector<int64_t>& floor) {
  tjscalingfactor best{1, 1};
  if (floor.empty()) return best;
  int count = 0;
  const tjscalingfactor* factors = tjGetScalingFactors(&count);
  for (int i = 0; i < count; ++i) {
    const tjscalingfactor f = factors[i];
    if (f.num * best.denom >= best.num * f.denom) continue;  // not smaller than the best so far
    if (f.num != 1 || (f.denom != 2 && f.denom != 4 && f.denom != 8)) continue;
    const int64_t w = TJSCALED(width, f), h = TJSCALED(height, f);
    const bool keeps =
        floor.size() == 1 ? std::min(w, h) >= floor[0] : h >= floor[0] && w >= floor[1];
    if (keeps) best = f;
  }
  return best;
}

at::Tensor decode_jpeg(const std::vector<unsigned char>& b, const std::string& file, int channels,
                       const std::vector<int64_t>& floor) {
  const JpegHeader h = jpeg_header(b, file);
  const tjscalingfactor f = jpeg_scale(h.width, h.height, floor);
  const int width = TJSCALED(h.width, f), height = TJSCALED(h.height, f);
  at::Tensor out = at::empty({height, width, channels}, at::kByte);
  const int format = channels == 1 ? TJPF_GRAY : TJPF_RGB;
  if (tjDecompress2(Jpeg::get(), b.data(), static_cast<unsigned long>(b.size()),
                    out.data_ptr<uint8_t>(), width, 0, height, format, 0) != 0) {
    // Warnings decode the whole image (extraneous bytes before a marker, as PIL reads too), but
    // a truncated file's missing rows come out gray: refused, as PIL refuses it.
    const std::string message = tjGetErrorStr2(Jpeg::get());
    const bool warning = tjGetErrorCode(Jpeg::get()) == TJERR_WARNING;
    if (!warning || message.find("Premature end") != std::string::npos) {
      Jpeg::fail(file + ": corrupt JPEG (" + message + ")");
    }
    Jpeg::reset();
  }
  return out.permute({2, 0, 1});
}

struct PngImage {
  png_image image{};
  PngImage() { image.version = PNG_IMAGE_VERSION; }
  ~PngImage() { png_image_free(&image); }
  PngImage(const PngImage&) = delete;
  PngImage& operator=(const PngImage&) = delete;
};

void png_begin(PngImage& p, const std::vector<unsigned char>& b, const std::string& file) {
  if (png_image_begin_read_from_memory(&p.image, b.data(), b.size()) == 0) {
    throw BadSample(file + ": not a readable PNG (" + p.image.message + ")");
  }
}

// PIL's "L" conversion of 8-bit RGB: (299 R + 587 G + 114 B) / 1000 in 16-bit fixed point.
at::Tensor luma(const at::Tensor& rgb) {
  const at::Tensor w = rgb.to(at::kInt);
  const at::Tensor l =
      (w.select(2, 0) * 19595 + w.select(2, 1) * 38470 + w.select(2, 2) * 7471 + 0x8000)
          .bitwise_right_shift(16);
  return l.to(at::kByte).unsqueeze(2);
}

at::Tensor decode_png(const std::vector<unsigned char>& b, const std::string& file, int channels) {
  PngImage p;
  png_begin(p, b, file);
  check_pixels(p.image.width, p.image.height, file);
  const bool color = (p.image.format & PNG_FORMAT_FLAG_COLOR) != 0;
  const bool alpha = (p.image.format & PNG_FORMAT_FLAG_ALPHA) != 0;
  // Read as stored (gray or RGB, with its alpha), then convert as PIL does: libpng's own
  // conversions composite alpha and weigh colours in linear light.
  uint32_t format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  if (alpha) format |= PNG_FORMAT_FLAG_ALPHA;
  p.image.format = format;
  const int64_t stored = PNG_IMAGE_PIXEL_CHANNELS(format);
  at::Tensor pixels = at::empty({p.image.height, p.image.width, stored}, at::kByte);
  if (png_image_finish_read(&p.image, nullptr, pixels.data_ptr<uint8_t>(), 0, nullptr) == 0) {
    throw BadSample(file + ": corrupt PNG (" + p.image.message + ")");
  }
  const int64_t kept = color ? 3 : 1;
  at::Tensor image = pixels.narrow(2, 0, kept);
  if (channels == 1 && color) image = luma(image);
  if (channels == 3 && !color) image = image.expand({-1, -1, 3});
  return image.permute({2, 0, 1});
}

}  // namespace

int stored_channels(const std::string& file) {
  const std::vector<unsigned char>& b = read_file(file);
  if (is_jpeg(b)) return jpeg_header(b, file).colorspace == TJCS_GRAY ? 1 : 3;
  if (is_png(b)) {
    PngImage p;
    png_begin(p, b, file);
    return (p.image.format & PNG_FORMAT_FLAG_COLOR) != 0 ? 3 : 1;
  }
  throw BadSample(file + ": not a JPEG or PNG image");
}

at::Tensor decode_image(const std::string& file, int channels, const std::vector<int64_t>& floor) {
  const std::vector<unsigned char>& b = read_file(file);
  if (is_jpeg(b)) return decode_jpeg(b, file, channels, floor);
  if (is_png(b)) return decode_png(b, file, channels);
  throw BadSample(file + ": not a JPEG or PNG image");
}

}  // namespace shrink::detail
