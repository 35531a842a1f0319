#include "run/checkpoint.hpp"

#include <shrink/core/error.hpp>
#include <shrink/core/files.hpp>
#include <shrink/core/one_line_error.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim.h>
#include <torch/serialize.h>

#include <mutex>
#include <sstream>

namespace shrink {

namespace {
constexpr const char* kFormat = "shrink-checkpoint-1";
}

void Checkpoint::save(const std::filesystem::path& path, torch::optim::Optimizer* optimizer) const {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string(kFormat)));
  archive.write("meta", c10::IValue(meta));
  // Archive keys must be plain identifiers; the real names travel as one newline-separated list.
  torch::serialize::OutputArchive values;
  std::string names;
  int64_t i = 0;
  for (const auto& [name, tensor] : tensors) {
    values.write("t" + std::to_string(i++), tensor.detach(), /*is_buffer=*/true);
    names += name + "\n";
  }
  archive.write("names", c10::IValue(names));
  archive.write("tensors", values);
  if (optimizer != nullptr) {
    torch::serialize::OutputArchive state;
    optimizer->save(state);
    archive.write("optimizer", state);
  }
  // In memory first: LibTorch's file writer reports a full disk from its destructor, which
  // aborts the process; our own write says so and keeps the previous checkpoint.
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomically(path, bytes.str());
}

Checkpoint Checkpoint::load(const std::filesystem::path& path) {
  Checkpoint k;
  k.file = path.string();
  k.archive_ = std::make_shared<torch::serialize::InputArchive>();
  try {
    k.archive_->load_from(path.string());
    c10::IValue format, meta, names;
    k.archive_->read("format", format);
    SHRINK_CHECK(format.isString() && format.toStringRef() == kFormat,
                 path.string() << ": not a Shrink checkpoint (format " << format << ")");
    k.archive_->read("meta", meta);
    k.archive_->read("names", names);
    k.meta = meta.toStringRef();
    torch::serialize::InputArchive values;
    k.archive_->read("tensors", values);
    std::istringstream list(names.toStringRef());
    std::string name;
    for (int64_t i = 0; std::getline(list, name); ++i) {
      at::Tensor t;
      values.read("t" + std::to_string(i), t, /*is_buffer=*/true);
      k.tensors[name] = t;
    }
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    throw Error(path.string() + ": not a readable Shrink checkpoint: " + first_line(what));
  }
  return k;
}

void Checkpoint::load_optimizer(torch::optim::Optimizer& optimizer) const {
  SHRINK_CHECK(archive_ != nullptr, file << ": no optimizer state");
  try {
    torch::serialize::InputArchive state;
    archive_->read("optimizer", state);
    optimizer.load(state);
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    throw Error(file + ": the optimizer state does not match this experiment: " + first_line(what));
  }
}

at::Tensor default_generator_state() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void set_default_generator_state(const at::Tensor& state) {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

}  // namespace shrink
