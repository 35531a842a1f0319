#include <shrink/core/error.hpp>
#include <shrink/graph/model.hpp>

#include "graph/graph_utils.hpp"

#include <torch/script.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>

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
    return torch::jit::load(path);
  } catch (const c10::Error& e) {
    why = e.what_without_backtrace();
  } catch (const std::exception& e) {
    why = e.what();
  }
  // LibTorch's message goes on with its backtrace and source excerpts: the first line says it.
  throw Error(path + ": not a loadable TorchScript model: " + why.substr(0, why.find('\n')));
}

Model Model::load(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->module = load_torchscript(path);
  SHRINK_CHECK(impl->module.find_method("forward").has_value(),
               path << ": the TorchScript module has no forward method");

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
