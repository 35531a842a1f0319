#include <shrink/core/error.hpp>
#include <shrink/core/files.hpp>
#include <shrink/core/one_line_error.hpp>
#include <shrink/graph/model.hpp>

#include "graph/graph_utils.hpp"
#include "graph/traced.hpp"

#include <torch/script.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>

namespace shrink {

std::string op_type_from_qualified_name(const std::string& qualified_name) {
  auto dot = qualified_name.rfind('.');
  return dot == std::string::npos ? qualified_name : qualified_name.substr(dot + 1);
}

struct Model::Impl {
  std::string path;
  torch::jit::Module module;
  std::vector<OpInstance> ops;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

const std::string& Model::path() const { return impl_->path; }
torch::jit::Module& Model::module() { return impl_->module; }
const torch::jit::Module& Model::module() const { return impl_->module; }
const std::vector<OpInstance>& Model::ops() const { return impl_->ops; }

const OpInstance* Model::find_op(const std::string& name) const {
  for (const auto& op : impl_->ops) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

torch::jit::Module load_torchscript(const std::string& path) {
  SHRINK_CHECK(std::filesystem::exists(path),
               path << ": no such file (expected a TorchScript model "
                       "saved with torch.jit.script or torch.jit.trace)");
  std::string why;
  try {
    torch::jit::Module module = torch::jit::load(path);
    detail::rewrite_traced(module);
    return module;
  } catch (const c10::Error& e) {
    why = e.what_without_backtrace();
  } catch (const std::exception& e) {
    why = e.what();
  }
  // LibTorch's message goes on with its backtrace and source excerpts: the first line says it.
  throw Error(path + ": not a loadable TorchScript model: " + first_line(why));
}

namespace {

// A NaN or inf weight (a corrupt file, a diverged training) would surface as a non-finite loss
// much later, blamed on the learning rate.
void check_finite_parameters(const torch::jit::Module& module, const std::string& path) {
  auto check = [&](const std::string& kind, const std::string& name, const at::Tensor& t) {
    if (!at::isFloatingType(t.scalar_type()) || t.numel() == 0) return;
    const int64_t bad = t.numel() - at::isfinite(t).sum().item<int64_t>();
    SHRINK_CHECK(bad == 0, path << ": " << kind << " " << name << " holds " << bad
                                << " NaN or infinite value(s) of " << t.numel());
  };
  for (const auto& p : module.named_parameters(true)) check("parameter", p.name, p.value);
  for (const auto& b : module.named_buffers(true)) check("buffer", b.name, b.value);
}

}  // namespace

std::string interpreter_error_line(const std::exception& e) {
  const c10::Error* c10_error = dynamic_cast<const c10::Error*>(&e);
  const std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  // The interpreter's traceback ends with the Python-style line that says what went wrong.
  std::istringstream lines(text);
  std::string line, found;
  while (std::getline(lines, line)) {
    const auto colon = line.find("Error: ");
    if (colon != std::string::npos && line.find(' ') > colon) found = line.substr(colon + 7);
  }
  return found.empty() ? first_line(text) : found;
}

void save_torchscript(const torch::jit::Module& module, const std::string& path) {
  std::ostringstream bytes;
  module.save(bytes);
  write_file_atomically(path, bytes.str());
}

Model Model::load(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->module = load_torchscript(path);
  SHRINK_CHECK(impl->module.find_method("forward").has_value(),
               path << ": the TorchScript module has no forward method");
  check_finite_parameters(impl->module, path);

  // Leaf modules are ops of their own.
  std::set<std::string> leaves;
  for (const auto& item : impl->module.named_modules()) {
    if (item.name.empty()) continue;
    if (item.value.named_children().size() != 0) continue;
    OpInstance op;
    op.name = item.name;
    op.type = op_type_from_qualified_name(item.value.type()->name()->qualifiedName());
    op.has_weight = item.value.hasattr("weight") && item.value.attr("weight").isTensor();
    op.has_bias = item.value.hasattr("bias") && item.value.attr("bias").isTensor();
    leaves.insert(op.name);
    impl->ops.push_back(op);
  }

  // Functional calls made in non-leaf modules' code (and the root's): "layer1.0.add".
  auto graph = detail::inlined_forward(impl->module, detail::ForwardGraph::kCopy);
  for (const auto& f : detail::functional_ops(*graph, leaves)) impl->ops.push_back(f.op);
  return Model(std::move(impl));
}

}  // namespace shrink
