// A TorchScript model as Shrink sees it: the module tree, and the op instances a config_list can
// select (leaf modules such as `conv1`, and functional calls such as the residual `add` of
// `layer1.0`).
#pragma once

#include <shrink/core/op_instance.hpp>

#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace torch::jit {
struct Module;
struct Graph;
}  // namespace torch::jit

namespace shrink {

class Model {
 public:
  // Loads a TorchScript file (torch.jit.script or torch.jit.trace). Throws shrink::Error naming
  // the file and what is wrong, a parameter or buffer holding NaN or inf included.
  static Model load(const std::string& path);

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const std::string& path() const;
  torch::jit::Module& module();
  const torch::jit::Module& module() const;
  // Op instances in module order, then functional ops in graph order.
  const std::vector<OpInstance>& ops() const;
  const OpInstance* find_op(const std::string& name) const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Loads a TorchScript file (no op discovery); a traced model's convolutions and BatchNorm and
// Dropout modes are rewritten as scripting writes them (graph/traced.hpp). Throws shrink::Error,
// one line naming the file: "<path>: no such file (...)" or "<path>: not a loadable TorchScript
// model: <why>".
torch::jit::Module load_torchscript(const std::string& path);

// Saves `module` to `path` with write_file_atomically (core/files.hpp): serialized in memory first,
// so that a full disk is one shrink::Error and `path` is either the whole model or as it was.
void save_torchscript(const torch::jit::Module& module, const std::string& path);

// The line that says what went wrong in an error from a TorchScript forward ("Given groups=1,
// weight of size ...": the last "RuntimeError: ..." line of the interpreter's traceback), or the
// first line of any other error.
std::string interpreter_error_line(const std::exception& e);

// "__torch__.torch.nn.modules.conv.___torch_mangle_0.Conv2d" -> "Conv2d".
std::string op_type_from_qualified_name(const std::string& qualified_name);

}  // namespace shrink
