#include <shrink/error.hpp>
#include <shrink/model.hpp>

#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>

namespace shrink {
namespace {

// Functional calls that can be quantization sites (their output), keyed by ATen name; in-place
// variants map to the same type.
const std::map<std::string, std::string>& functional_ops() {
  static const std::map<std::string, std::string> ops = {
      {"aten::add", "add"},           {"aten::add_", "add"},
      {"aten::mul", "mul"},           {"aten::mul_", "mul"},
      {"aten::cat", "cat"},           {"aten::relu", "relu"},
      {"aten::relu_", "relu"},        {"aten::relu6", "relu6"},
      {"aten::hardtanh", "hardtanh"}, {"aten::hardtanh_", "hardtanh"},
      {"aten::hardswish", "hardswish"}, {"aten::hardswish_", "hardswish"},
      {"aten::sigmoid", "sigmoid"},   {"aten::matmul", "matmul"},
      {"aten::adaptive_avg_pool2d", "adaptive_avg_pool2d"},
      {"aten::max_pool2d", "max_pool2d"}, {"aten::avg_pool2d", "avg_pool2d"},
      {"aten::flatten", "flatten"},   {"aten::mean", "mean"},
  };
  return ops;
}

// Module instance path of a node from its inlined call stack ("layer1.0.conv1"); "" for the root.
std::string scope_of(const torch::jit::Node* node) {
  auto cs = node->callstack();
  if (!cs) return "";
  std::string path;
  for (const auto& entry : (*cs)->vec()) {
    const auto& info = std::get<2>(entry);
    if (!info) continue;
    const std::string name = info->instance_name();
    if (name == "SELF" || name.empty()) continue;  // a method called on the same module
    path += (path.empty() ? "" : ".") + name;
  }
  return path;
}

}  // namespace

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

Model Model::load(const std::string& path) {
  SHRINK_CHECK(std::filesystem::exists(path), path << ": no such file (expected a TorchScript model "
                                                      "saved with torch.jit.script or torch.jit.trace)");
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  try {
    impl->module = torch::jit::load(path);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    throw Error(path + ": not a loadable TorchScript model: " + what.substr(0, what.find('\n')));
  }
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
  auto graph = impl->module.get_method("forward").graph()->copy();
  torch::jit::Inline(*graph);
  std::map<std::string, int> seen;
  // Only the top-level block: calls inside control flow (BatchNorm's `num_batches_tracked += 1`
  // under `if self.training`, say) are bookkeeping, not data-path ops, and carry no call stack.
  for (torch::jit::Node* node : graph->block()->nodes()) {
    auto it = functional_ops().find(node->kind().toQualString());
    if (it == functional_ops().end()) continue;
    if (node->outputs().size() != 1 || !node->output()->type()->cast<c10::TensorType>()) continue;
    const std::string scope = scope_of(node);
    if (leaves.count(scope)) continue;  // the body of a module op, not a functional call
    const std::string base = (scope.empty() ? "" : scope + ".") + it->second;
    const int index = seen[base]++;
    OpInstance op;
    op.name = index == 0 ? base : base + "_" + std::to_string(index);
    op.type = it->second;
    op.functional = true;
    impl->ops.push_back(op);
  }
  return Model(std::move(impl));
}

}  // namespace shrink
