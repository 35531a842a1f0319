#include <shrink/core/error.hpp>
#include <shrink/data/dataset.hpp>

#include <torch/serialize.h>
#include <torch/torch.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace shrink {
namespace {

std::string read_gz_or_plain(const std::string& file) {
  SHRINK_CHECK(fs::exists(file), file << ": no such file");
  gzFile gz = gzopen(file.c_str(), "rb");  // reads plain files too
  SHRINK_CHECK(gz != nullptr, file << ": cannot be opened");
  std::string bytes;
  char buffer[1 << 16];
  int n = 0;
  while ((n = gzread(gz, buffer, sizeof buffer)) > 0)
    bytes.append(buffer, static_cast<std::size_t>(n));
  int err = 0;
  const char* message = gzerror(gz, &err);
  const bool failed = n < 0 || (err != Z_OK && err != Z_STREAM_END);
  const std::string why = failed ? message : "";
  gzclose(gz);
  SHRINK_CHECK(!failed, file << ": corrupt gzip data (" << why << ")");
  return bytes;
}

uint32_t big_endian(const std::string& bytes, std::size_t at) {
  return (uint32_t(uint8_t(bytes[at])) << 24) | (uint32_t(uint8_t(bytes[at + 1])) << 16) |
         (uint32_t(uint8_t(bytes[at + 2])) << 8) | uint32_t(uint8_t(bytes[at + 3]));
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

Dataset prepare(at::Tensor inputs, at::Tensor targets, const DataOptions& o, int64_t limit,
                const std::string& source) {
  SHRINK_CHECK(inputs.size(0) == targets.size(0),
               source << ": " << inputs.size(0) << " inputs but " << targets.size(0) << " targets");
  if (limit > 0 && limit < inputs.size(0)) {
    inputs = inputs.narrow(0, 0, limit);
    targets = targets.narrow(0, 0, limit);
  }
  if (inputs.dim() == 3) inputs = inputs.unsqueeze(1);
  SHRINK_CHECK(inputs.dim() == 4, source << ": inputs have " << inputs.dim()
                                         << " dimensions, expected [N, H, W] or [N, C, H, W]");
  if (o.resize > 0 && (inputs.size(2) != o.resize || inputs.size(3) != o.resize)) {
    inputs = torch::upsample_bilinear2d(inputs, {o.resize, o.resize}, false);
  }
  if (o.channels > 0 && inputs.size(1) != o.channels) {
    SHRINK_CHECK(inputs.size(1) == 1, source << ": cannot replicate " << inputs.size(1)
                                             << " channels to " << o.channels);
    inputs = inputs.expand({-1, o.channels, -1, -1});
  }
  if (!o.mean.empty()) {
    const int64_t c = inputs.size(1);
    SHRINK_CHECK(
        static_cast<int64_t>(o.mean.size()) == c && static_cast<int64_t>(o.std.size()) == c,
        source << ": normalize has " << o.mean.size() << " means and " << o.std.size()
               << " stds for " << c << " channels");
    at::Tensor mean = torch::tensor(o.mean, torch::kFloat).view({1, c, 1, 1});
    at::Tensor std = torch::tensor(o.std, torch::kFloat).view({1, c, 1, 1});
    inputs = (inputs - mean) / std;
  }
  Dataset d;
  d.inputs = inputs.contiguous();
  d.targets = targets.to(torch::kLong).contiguous();
  SHRINK_CHECK(torch::isfinite(d.inputs).all().item<bool>(),
               source << ": the inputs contain NaN or infinity");
  return d;
}

}  // namespace

at::Tensor read_idx(const std::string& file) {
  const std::string bytes = read_gz_or_plain(file);
  SHRINK_CHECK(bytes.size() >= 4, file << ": too short for an IDX header");
  const uint32_t magic = big_endian(bytes, 0);
  SHRINK_CHECK((magic >> 16) == 0 && ((magic >> 8) & 0xff) == 0x08,
               file << ": not an IDX file of unsigned bytes (magic 0x" << std::hex << magic << ")");
  const uint32_t ndim = magic & 0xff;
  SHRINK_CHECK(ndim >= 1 && ndim <= 4, file << ": IDX with " << ndim << " dimensions");
  SHRINK_CHECK(bytes.size() >= 4 + 4 * ndim, file << ": truncated IDX header");
  std::vector<int64_t> shape;
  int64_t count = 1;
  for (uint32_t i = 0; i < ndim; ++i) {
    shape.push_back(big_endian(bytes, 4 + 4 * i));
    count *= shape.back();
  }
  const std::size_t offset = 4 + 4 * ndim;
  SHRINK_CHECK(
      bytes.size() == offset + static_cast<std::size_t>(count),
      file << ": " << bytes.size() - offset << " bytes of data, the header promises " << count);
  at::Tensor out = torch::empty(shape, torch::kUInt8);
  std::memcpy(out.data_ptr(), bytes.data() + offset, static_cast<std::size_t>(count));
  return out;
}

Dataset load_dataset(const DataOptions& o, bool train) {
  const int64_t limit = train ? o.train_limit : o.test_limit;
  if (o.format == "idx") {
    const std::string images_file = idx_file(o.path, train, "images-idx3-ubyte");
    const std::string labels_file = idx_file(o.path, train, "labels-idx1-ubyte");
    at::Tensor images = read_idx(images_file);
    at::Tensor labels = read_idx(labels_file);
    SHRINK_CHECK(images.dim() == 3, images_file << ": expected [N, H, W] images");
    SHRINK_CHECK(labels.dim() == 1, labels_file << ": expected [N] labels");
    return prepare(images.to(torch::kFloat).div_(255.0), labels, o, limit, images_file);
  }
  SHRINK_CHECK(o.format == "tensors",
               "data.format is '" << o.format << "', expected idx or tensors");
  const std::string file = train ? o.path : (o.test_path.empty() ? o.path : o.test_path);
  SHRINK_CHECK(fs::exists(file), file << ": no such file");
  std::ifstream in(file, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw Error(file + ": not a file written by torch.save((inputs, targets))");
  }
  SHRINK_CHECK(value.isTuple() && value.toTupleRef().elements().size() == 2 &&
                   value.toTupleRef().elements()[0].isTensor() &&
                   value.toTupleRef().elements()[1].isTensor(),
               file << ": expected a pair of tensors written by torch.save((inputs, targets))");
  const auto& items = value.toTupleRef().elements();
  at::Tensor inputs = items[0].toTensor();
  if (inputs.scalar_type() == torch::kUInt8) inputs = inputs.to(torch::kFloat).div_(255.0);
  return prepare(inputs.to(torch::kFloat), items[1].toTensor(), o, limit, file);
}

}  // namespace shrink
