// Where samples come from: a Source hands out sample i (an image tensor and its label) to any
// thread that asks. Built-in sources read IDX files, torch.save files and image folders;
// data-source plugins are Sources too.
#pragma once

#include <shrink/config/data_options.hpp>
#include <shrink/core/error.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace shrink {

struct Sample {
  at::Tensor input;  // [C, H, W] (or [H, W]): uint8 (0..255) or floating point (taken as it is)
  int64_t label = 0;
};

// A sample that cannot be read (a corrupt or unreadable image file): with data.on_bad_sample:
// skip the loader counts it and goes on; any other error stops the run.
class BadSample : public Error {
 public:
  using Error::Error;
};

class Source {
 public:
  virtual ~Source() = default;
  virtual int64_t size() const = 0;
  // Sample i, 0 <= i < size(). Called from several threads at once.
  virtual Sample get(int64_t i) const = 0;
  // What names sample i in a message: its file, or "<file>: sample i".
  virtual std::string name(int64_t i) const = 0;
  // Every label, when known without reading the samples (checked before anything trains).
  virtual at::Tensor labels() const { return {}; }
  // Class names by index, when the source has them (image folders).
  virtual std::vector<std::string> classes() const { return {}; }
  // Whether reading a sample costs real work (decoding a file): worth worker threads.
  virtual bool decodes() const { return false; }
  // What looks like a mistake but may not be one.
  virtual std::vector<std::string> warnings() const { return {}; }
};

// The built-in source of a split (format idx, tensors or folder); `decode_floor` is the smallest
// [h, w] a scaled JPEG decode may give (empty: full size). Throws shrink::Error naming the file
// and what is wrong (no such file, no class folders, a list entry that does not exist, ...).
std::unique_ptr<Source> open_builtin_source(const DataOptions& options, bool train,
                                            const std::vector<int64_t>& decode_floor);

// Samples held in memory (inputs [N, C, H, W] or [N, H, W], uint8 or floating point; integer
// labels [N]), named `name` in messages: what a tensors file gives, and what tests build.
std::unique_ptr<Source> memory_source(const at::Tensor& inputs, const at::Tensor& targets,
                                      const std::string& name);

// Reads one IDX file (.gz or plain) as a uint8 tensor of its shape. Throws shrink::Error naming
// the file and what is wrong with it.
at::Tensor read_idx(const std::string& file);

}  // namespace shrink
