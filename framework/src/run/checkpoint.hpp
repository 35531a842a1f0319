// Training checkpoints of `shrink run`: named tensors (model, quantizer state, RNG), the
// optimizer's state and a JSON text of the run's progress, in one file written atomically.
#pragma once

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

namespace torch {
namespace optim {
class Optimizer;
}
namespace serialize {
class InputArchive;
}
}  // namespace torch

namespace shrink {

struct Checkpoint {
  std::string file;  // where it was loaded from
  std::string meta;  // JSON text
  std::map<std::string, at::Tensor> tensors;

  // Writes `file` (to a temporary name, then renamed over it) with the optimizer's state.
  void save(const std::filesystem::path& file, torch::optim::Optimizer* optimizer) const;
  // Throws shrink::Error naming the file when it is not a Shrink checkpoint.
  static Checkpoint load(const std::filesystem::path& file);
  // Restores the optimizer saved with the checkpoint; the optimizer must have the same parameters.
  void load_optimizer(torch::optim::Optimizer& optimizer) const;

 private:
  std::shared_ptr<torch::serialize::InputArchive> archive_;
};

// The state of LibTorch's default CPU generator (randperm, dropout, ...), and its restoration.
at::Tensor default_generator_state();
void set_default_generator_state(const at::Tensor& state);

}  // namespace shrink
