// Data sources for experiments, as DataOptions describe them: IDX files (MNIST, Fashion-MNIST; gzip
// or plain) and tensor files written by Python's torch.save((inputs, targets)).
#pragma once

#include <shrink/config/data_options.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace shrink {

struct Dataset {
  at::Tensor inputs;                  // float32 [N, C, H, W], normalised
  at::Tensor targets;                 // int64 [N]
  std::vector<std::string> warnings;  // what looks like a mistake but may not be one
  int64_t size() const { return inputs.defined() ? inputs.size(0) : 0; }
};

// Reads one IDX file (.gz or plain) as a uint8 tensor of its shape. Throws shrink::Error naming
// the file and what is wrong with it.
at::Tensor read_idx(const std::string& file);

// The training (train = true) or test split, prepared as the options say. The labels must be
// integer class indices in [0, classes) (`classes` = 0: not known, then only >= 0); a bad one is
// a shrink::Error naming the file and the sample.
Dataset load_dataset(const DataOptions& options, bool train, int64_t classes = 0);

// The shape of one training sample as the options prepare it ([C, H, W]), read from the IDX
// header alone (a tensors file is read whole): what the plan check runs through the model.
std::vector<int64_t> sample_shape(const DataOptions& options);

}  // namespace shrink
