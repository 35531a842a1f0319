// Where an experiment's data come from and how they are prepared (the experiment's `data:` keys).
#pragma once

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
  int64_t resize = 0;       // square side; 0: keep
  int64_t channels = 0;     // replicate a 1-channel image to this many; 0: keep
  int64_t train_limit = 0;  // use the first N training samples; 0: all
  int64_t test_limit = 0;   // use the first N test samples; 0: all
};

}  // namespace shrink
