#include <shrink/core/error.hpp>
#include <shrink/data/source.hpp>

#include "data/folder_source.hpp"

#include "data/pickle_check.hpp"
#include "data/zip_check.hpp"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/serialize.h>
#include <torch/torch.h>
#include <zlib.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

namespace fs = std::filesystem;

namespace shrink {
namespace {

// A gzip or plain file, read as it is needed (gzread reads plain files too).
class GzReader {
 public:
  explicit GzReader(const std::string& file) : file_(file) {
    SHRINK_CHECK(fs::exists(file), file << ": no such file");
    gz_ = gzopen(file.c_str(), "rb");
    SHRINK_CHECK(gz_ != nullptr, file << ": cannot be opened");
  }
  ~GzReader() { gzclose(gz_); }

  // The most bytes the file can hold: its size when plain, what deflate's best ratio (1032:1)
  // gives when gzip. Valid once something was read.
  double most_bytes() const {
    std::error_code ec;
    const double size = static_cast<double>(fs::file_size(file_, ec));
    return gzdirect(gz_) ? size : 1032.0 * size;
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Up to `n` bytes into `into`; how many there were.
  std::size_t read(void* into, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
      const int got = gzread(gz_, static_cast<char*>(into) + done, chunk);
      if (got < 0) {
        int err = 0;
        throw Error(file_ + ": corrupt gzip data (" + gzerror(gz_, &err) + ")");
      }
      if (got == 0) break;
      done += static_cast<std::size_t>(got);
    }
    return done;
  }

 private:
  std::string file_;
  gzFile gz_;
};

double physical_memory() {
  return static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
}

uint32_t big_endian(const unsigned char* bytes) {
  return (uint32_t(bytes[0]) << 24) | (uint32_t(bytes[1]) << 16) | (uint32_t(bytes[2]) << 8) |
         uint32_t(bytes[3]);
}

// The shape an IDX header promises, read before any of the body: a header that promises more than
// the file can hold (a corrupt header, a gzip bomb) or than this machine's memory is refused before
// anything is allocated.
std::vector<int64_t> read_idx_header(GzReader& in, const std::string& file) {
  unsigned char word[4];
  SHRINK_CHECK(in.read(word, 4) == 4, file << ": too short for an IDX header");
  const uint32_t magic = big_endian(word);
  SHRINK_CHECK((magic >> 16) == 0 && ((magic >> 8) & 0xff) == 0x08,
               file << ": not an IDX file of unsigned bytes (magic 0x" << std::hex << magic << ")");
  const uint32_t ndim = magic & 0xff;
  SHRINK_CHECK(ndim >= 1 && ndim <= 4, file << ": IDX with " << ndim << " dimensions");
  std::vector<int64_t> shape;
  const double memory = physical_memory();
  // A dimension of 0 makes the count 0 whatever the others are, but LibTorch still multiplies
  // them (and overflows): the others are bounded as if it were 1.
  double count = 1;
  for (uint32_t i = 0; i < ndim; ++i) {
    SHRINK_CHECK(in.read(word, 4) == 4, file << ": truncated IDX header");
    shape.push_back(big_endian(word));
    count *= std::max(1.0, static_cast<double>(shape.back()));
  }
  SHRINK_CHECK(count <= memory, file << ": the IDX header promises " << count
                                     << " bytes, more than this machine's memory (" << memory / 1e9
                                     << " GB)");
  SHRINK_CHECK(count <= in.most_bytes(), file << ": the IDX header promises " << count
                                              << " bytes, more than the file can hold");
  return shape;
}

// The IDX file of a split: "<prefix>-images-idx3-ubyte[.gz]".
std::string idx_file(const std::string& folder, bool train, const std::string& what) {
  const std::string base = (train ? "train" : "t10k") + std::string("-") + what;
  for (const std::string& suffix : {".gz", ""}) {
    const fs::path candidate = fs::path(folder) / (base + suffix);
    if (fs::exists(candidate)) return candidate.string();
  }
  throw Error(folder + ": no " + base +
              "[.gz] (expected an IDX dataset folder such as "
              "/usr/share/datasets/fashion-mnist)");
}

// Labels are integer class indices (their range is checked against the model's classes when
// the split opens): a float label would be truncated.
void check_integer_labels(const at::Tensor& targets, const std::string& source) {
  const at::ScalarType type = targets.scalar_type();
  SHRINK_CHECK(
      at::isIntegralType(type, /*includeBool=*/false),
      source << ": the labels are " << c10::toString(type) << ", expected integer class indices");
}

// Float inputs whose mean is already about 0 and standard deviation about 1, about to be
// normalized again: training still runs, on inputs shifted and scaled away from what the model
// saw (measured: half the accuracy). Said, not refused: the statistics may be a coincidence.
std::vector<std::string> normalized_already(const at::Tensor& inputs, bool raw_bytes,
                                            const std::string& source) {
  if (raw_bytes || inputs.numel() == 0) return {};
  const at::Tensor x = inputs.to(torch::kFloat);  // no copy for float32
  const double mean = x.mean().item<double>(), std = x.std().item<double>();
  if (std::abs(mean) > 0.1 || std::abs(std - 1.0) > 0.1) return {};
  std::ostringstream line;
  line << std::fixed << std::setprecision(3) << source << ": the inputs are floats of mean " << mean
       << " and standard deviation " << std
       << " already; data.normalize is applied to them again (remove it if they are normalized)";
  return {line.str()};
}

// Whether every element of `t` lies inside its storage: LibTorch's unpickler takes a file's sizes,
// strides and offset as they are, so a crafted file could make a tensor that reads past its
// buffer.
bool inside_storage(const at::Tensor& t) {
  if (t.numel() == 0) return true;
  if (!t.has_storage() || t.storage_offset() < 0) return false;
  uint64_t last = static_cast<uint64_t>(t.storage_offset());
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.stride(d) < 0) return false;
    const uint64_t span = static_cast<uint64_t>(t.size(d) - 1) * static_cast<uint64_t>(t.stride(d));
    if (t.stride(d) != 0 &&
        span / static_cast<uint64_t>(t.stride(d)) != static_cast<uint64_t>(t.size(d) - 1)) {
      return false;  // overflow
    }
    last += span;
  }
  const uint64_t elements = t.storage().nbytes() / t.element_size();
  return last < elements;
}

// What torch::pickle_load does, reading the file through LibTorch's file adapter: 1.13's in-memory
// reader copies past the end of its buffer when a zip directory points there (found by fuzzing:
// tests/fuzz/regressions/tensors/). The pickle is looked over first: LibTorch's unpickler
// allocates what its fields declare.
c10::IValue unpickle(const std::string& file) {
  const std::string refusal = file + ": not a file written by torch.save((inputs, targets))";
  std::string problem;
  try {
    caffe2::serialize::PyTorchStreamReader reader(file);
    const auto [bytes, size] = reader.getRecord("data.pkl");
    problem = detail::check_pickle(static_cast<const unsigned char*>(bytes.get()), size);
    if (problem.empty()) {
      return torch::jit::readArchiveAndTensors("data", "", "", c10::nullopt, c10::nullopt,
                                               c10::nullopt, reader);
    }
  } catch (const std::exception&) {
    // c10::Error, and the std::out_of_range LibTorch's unpickler lets out on a corrupt file.
    throw Error(refusal);
  }
  throw Error(refusal + ": " + problem);
}

// torch.save((inputs, targets)), as they are: dense CPU tensors, inputs uint8 or floating point.
std::pair<at::Tensor, at::Tensor> read_tensors(const std::string& file) {
  SHRINK_CHECK(fs::exists(file), file << ": no such file");
  const std::string zip_problem = detail::check_zip_directory(file);
  SHRINK_CHECK(zip_problem.empty(), file << ": not a file written by torch.save((inputs, "
                                            "targets)): "
                                         << zip_problem);
  const c10::IValue value = unpickle(file);
  SHRINK_CHECK(value.isTuple() && value.toTupleRef().elements().size() == 2 &&
                   value.toTupleRef().elements()[0].isTensor() &&
                   value.toTupleRef().elements()[1].isTensor(),
               file << ": expected a pair of tensors written by torch.save((inputs, targets))");
  const auto& items = value.toTupleRef().elements();
  const at::Tensor inputs = items[0].toTensor(), targets = items[1].toTensor();
  for (const at::Tensor* t : {&inputs, &targets}) {
    SHRINK_CHECK(t->layout() == at::kStrided && t->device().is_cpu() && !t->is_quantized(),
                 file << ": expected dense CPU tensors, got " << t->toString());
    SHRINK_CHECK(inside_storage(*t), file << ": a tensor of shape " << t->sizes()
                                          << " whose strides reach past its data (corrupt file)");
  }
  SHRINK_CHECK(inputs.scalar_type() == torch::kUInt8 || at::isFloatingType(inputs.scalar_type()),
               file << ": the inputs are " << c10::toString(inputs.scalar_type())
                    << ", expected uint8 or floating point");
  return {inputs, targets};
}

}  // namespace

at::Tensor read_idx(const std::string& file) {
  GzReader in(file);
  const std::vector<int64_t> shape = read_idx_header(in, file);
  at::Tensor out = torch::empty(shape, torch::kUInt8);
  const std::size_t count = static_cast<std::size_t>(out.numel());
  const std::size_t got = in.read(out.data_ptr(), count);
  char extra = 0;
  SHRINK_CHECK(got == count && in.read(&extra, 1) == 0,
               file << ": " << (got < count ? std::to_string(got) : "more") << " bytes of data, "
                    << "the header promises " << count);
  return out;
}

namespace {

// Samples held in memory as the file gave them (IDX bytes, or a torch.save pair): sample i is a
// view, nothing is copied.
class TensorSource : public Source {
 public:
  TensorSource(at::Tensor inputs, at::Tensor targets, std::string file, int64_t size)
      : inputs_(std::move(inputs)),
        targets_(targets.to(at::kLong).contiguous()),  // read by index in get()
        file_(std::move(file)),
        size_(size) {}
  int64_t size() const override { return size_; }
  Sample get(int64_t i) const override {
    return {inputs_.select(0, i), targets_.data_ptr<int64_t>()[i]};
  }
  std::string name(int64_t i) const override { return file_ + ": sample " + std::to_string(i); }
  at::Tensor labels() const override { return targets_.narrow(0, 0, size_); }
  std::vector<std::string> warnings() const override { return warnings_; }
  void warn(std::vector<std::string> w) { warnings_ = std::move(w); }

 private:
  at::Tensor inputs_, targets_;
  std::string file_;
  int64_t size_;
  std::vector<std::string> warnings_;
};

bool normalizes(const std::vector<TransformSpec>& transforms) {
  return std::any_of(transforms.begin(), transforms.end(),
                     [](const TransformSpec& t) { return t.name == "normalize"; });
}

// What a pair of inputs and labels must be, checked before anything reads a sample.
std::unique_ptr<Source> tensor_source(const at::Tensor& inputs, const at::Tensor& targets,
                                      const std::string& source, const std::string& label_source,
                                      bool normalized) {
  SHRINK_CHECK(inputs.dim() == 3 || inputs.dim() == 4,
               source << ": inputs have " << inputs.dim()
                      << " dimensions, expected [N, H, W] or [N, C, H, W]");
  SHRINK_CHECK(targets.dim() == 1, label_source << ": the labels have shape " << targets.sizes()
                                                << ", expected [N] class indices");
  SHRINK_CHECK(inputs.size(0) == targets.size(0),
               source << ": " << inputs.size(0) << " inputs but " << targets.size(0) << " targets");
  check_integer_labels(targets, label_source);
  const bool raw_bytes = inputs.scalar_type() == torch::kUInt8;
  if (!raw_bytes) {
    SHRINK_CHECK(torch::isfinite(inputs).all().item<bool>(),
                 source << ": the inputs contain NaN or infinity");
  }
  auto out = std::make_unique<TensorSource>(inputs, targets, source, inputs.size(0));
  if (normalized) out->warn(normalized_already(inputs, raw_bytes, source));
  return out;
}

}  // namespace

std::unique_ptr<Source> memory_source(const at::Tensor& inputs, const at::Tensor& targets,
                                      const std::string& name) {
  return tensor_source(inputs, targets, name, name, false);
}

std::unique_ptr<Source> open_builtin_source(const DataOptions& o, bool train,
                                            const std::vector<int64_t>& decode_floor) {
  const bool normalized = normalizes(train ? o.train_transforms : o.test_transforms);
  if (o.format == "idx") {
    const std::string images_file = idx_file(o.path, train, "images-idx3-ubyte");
    const std::string labels_file = idx_file(o.path, train, "labels-idx1-ubyte");
    at::Tensor images = read_idx(images_file);
    at::Tensor labels = read_idx(labels_file);
    SHRINK_CHECK(images.dim() == 3, images_file << ": expected [N, H, W] images");
    SHRINK_CHECK(labels.dim() == 1, labels_file << ": expected [N] labels");
    return tensor_source(images, labels, images_file, labels_file, normalized);
  }
  if (o.format == "folder") return detail::open_folder(o, train, decode_floor);
  SHRINK_CHECK(o.format == "tensors",
               "data.format is '" << o.format << "', expected idx, tensors or folder");
  const std::string file = train ? o.path : o.test_path;
  const auto [inputs, targets] = read_tensors(file);
  return tensor_source(inputs, targets, file, file, normalized);
}

}  // namespace shrink
