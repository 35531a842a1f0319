// Data sources for experiments: IDX files (MNIST, Fashion-MNIST; gzip or plain) and tensor files
// written by Python's torch.save((inputs, targets)).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace shrink {

struct DataOptions {
  std::string format = "idx";  // "idx" or "tensors"
  std::string path;            // IDX folder, or the torch.save file (a training file)
  std::string test_path;       // tensors only: the evaluation file
  std::vector<double> mean;    // per channel; empty: no normalisation
  std::vector<double> std;
  int64_t resize = 0;          // square side; 0: keep
  int64_t channels = 0;        // replicate a 1-channel image to this many; 0: keep
  int64_t train_limit = 0;     // use the first N training samples; 0: all
  int64_t test_limit = 0;      // use the first N test samples; 0: all
};

struct Dataset {
  at::Tensor inputs;   // float32 [N, C, H, W], normalised
  at::Tensor targets;  // int64 [N]
  int64_t size() const { return inputs.defined() ? inputs.size(0) : 0; }
};

// Reads one IDX file (.gz or plain) as a uint8 tensor of its shape. Throws shrink::Error naming
// the file and what is wrong with it.
at::Tensor read_idx(const std::string& file);

// The training (train = true) or test split, prepared as the options say.
Dataset load_dataset(const DataOptions& options, bool train);

}  // namespace shrink
