#include "targets.hpp"

#include <shrink/config/config_list.hpp>
#include <shrink/config/experiment.hpp>
#include <shrink/core/error.hpp>
#include <shrink/core/op_instance.hpp>
#include <shrink/data/loader.hpp>

#include "data/image_codec.hpp"

#include <ATen/ATen.h>
#include <shrink/host/shared_library.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#ifndef SHRINK_FUZZ_EXPERIMENT_PATH
#error "SHRINK_FUZZ_EXPERIMENT_PATH: where the fuzzed experiment pretends to live (configs/)"
#endif

namespace shrink_fuzz {

namespace {

std::string text(const uint8_t* data, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// A folder of this process's own for the inputs as files (the readers take paths), removed when
// the process ends.
class Scratch {
 public:
  Scratch()
      : dir_(std::filesystem::temp_directory_path() / ("shrink_fuzz_" + std::to_string(getpid()))) {
    std::filesystem::create_directories(dir_);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string write(const uint8_t* data, std::size_t size, const char* name) const {
    const std::filesystem::path file = dir_ / name;
    std::ofstream(file, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    return file.string();
  }

 private:
  std::filesystem::path dir_;
};

std::string as_file(const uint8_t* data, std::size_t size, const char* name) {
  static const Scratch scratch;
  return scratch.write(data, size, name);
}

// Whether `body` read its input; a shrink::Error is a refusal, what bad input should get.
template <typename Body>
bool read_or_refused(Body&& body) {
  try {
    body();
    return true;
  } catch (const shrink::Error&) {
    return false;
  }
}

// The quick-start net's ops, as Model::load finds them.
const std::vector<shrink::OpInstance>& mnist_ops() {
  static const std::vector<shrink::OpInstance> ops = [] {
    std::vector<shrink::OpInstance> v;
    for (const char* conv : {"conv1", "conv2"}) v.push_back({conv, "Conv2d", false, true, true});
    for (const char* fc : {"fc1", "fc2"}) v.push_back({fc, "Linear", false, true, true});
    for (const char* relu : {"relu1", "relu2", "relu3"}) v.push_back({relu, "ReLU6"});
    v.push_back({"pool1", "MaxPool2d"});
    v.push_back({"flatten", "flatten", true});
    v.push_back({"add", "add", true});
    return v;
  }();
  return ops;
}

}  // namespace

bool experiment(const uint8_t* data, std::size_t size) {
  const std::string all = text(data, size);
  const std::size_t nul = all.find('\0');
  std::vector<std::string> overrides;
  if (nul != std::string::npos) {
    std::size_t at = nul + 1;
    while (at <= all.size()) {
      const std::size_t next = std::min(all.find('\0', at), all.size());
      overrides.push_back(all.substr(at, next - at));
      at = next + 1;
    }
  }
  return read_or_refused([&] {
    shrink::Experiment::parse(all.substr(0, nul), SHRINK_FUZZ_EXPERIMENT_PATH, overrides);
  });
}

bool config_list(const uint8_t* data, std::size_t size) {
  shrink::ConfigList list;
  if (!read_or_refused([&] { list = shrink::ConfigList::parse_text(text(data, size), "fuzz"); })) {
    return false;
  }
  // A list is for quantization or for pruning: read when one of the two plans it.
  const bool sites = read_or_refused([&] { shrink::plan_sites(list, mnist_ops()); });
  const bool pruning = read_or_refused([&] { shrink::plan_pruning(list, mnist_ops()); });
  return sites || pruning;
}

bool idx(const uint8_t* data, std::size_t size) {
  const std::string file = as_file(data, size, "data-idx");
  return read_or_refused([&] { shrink::read_idx(file); });
}

bool tensors(const uint8_t* data, std::size_t size) {
  shrink::DataOptions options;
  options.format = "tensors";
  options.path = options.test_path = as_file(data, size, "data.pt");
  return read_or_refused([&] {
    shrink::DataSplit split(shrink::open_builtin_source(options, true, {}), options, true, 0);
    split.check_labels(10);
    shrink::Loader loader(split, at::arange(split.size()), 64, false, 0);
    shrink::Batch batch;
    while (loader.next(batch)) {
    }
  });
}

bool image(const uint8_t* data, std::size_t size) {
  const std::string file = as_file(data, size, "image");
  return read_or_refused([&] {
    shrink::detail::decode_image(file, 3, {});
    shrink::detail::decode_image(file, 1, {8});
    shrink::detail::stored_channels(file);
  });
}

bool plugin_file(const uint8_t* data, std::size_t size) {
  return shrink::check_shared_library(as_file(data, size, "plugin.so")).empty();
}

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"experiment", experiment}, {"config_list", config_list}, {"idx", idx},
      {"image", image},           {"tensors", tensors},         {"plugin_file", plugin_file}};
  return all;
}

}  // namespace shrink_fuzz
