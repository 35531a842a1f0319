#include "graph/graph_utils.hpp"

#include <shrink/core/error.hpp>

#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <ATen/ATen.h>

#include <filesystem>

namespace shrink::detail {
namespace {

const std::map<std::string, std::string>& functional_kinds() {
  static const std::map<std::string, std::string> kinds = {
      {"aten::add", "add"},
      {"aten::add_", "add"},
      {"aten::mul", "mul"},
      {"aten::mul_", "mul"},
      {"aten::cat", "cat"},
      {"aten::relu", "relu"},
      {"aten::relu_", "relu"},
      {"aten::relu6", "relu6"},
      {"aten::hardtanh", "hardtanh"},
      {"aten::hardtanh_", "hardtanh"},
      {"aten::hardswish", "hardswish"},
      {"aten::hardswish_", "hardswish"},
      {"aten::sigmoid", "sigmoid"},
      {"aten::silu", "silu"},
      {"aten::silu_", "silu"},
      {"aten::tanh", "tanh"},
      {"aten::gelu", "gelu"},
      {"aten::leaky_relu", "leaky_relu"},
      {"aten::leaky_relu_", "leaky_relu"},
      {"aten::matmul", "matmul"},
      {"aten::adaptive_avg_pool2d", "adaptive_avg_pool2d"},
      {"aten::max_pool2d", "max_pool2d"},
      {"aten::avg_pool2d", "avg_pool2d"},
      {"aten::flatten", "flatten"},
      {"aten::mean", "mean"},
  };
  return kinds;
}

}  // namespace

c10::Symbol sym(const char* qualified) { return c10::Symbol::fromQualString(qualified); }

bool is(const torch::jit::Node* n, const char* kind) { return n->kind() == sym(kind); }

GraphOptimizeOn::GraphOptimizeOn() : before_(torch::jit::getGraphExecutorOptimize()) {
  torch::jit::setGraphExecutorOptimize(true);
}

GraphOptimizeOn::~GraphOptimizeOn() { torch::jit::setGraphExecutorOptimize(before_); }

void inline_calls(torch::jit::Graph& graph) {
  GraphOptimizeOn on;
  torch::jit::Inline(graph);
}

void fold_flag_attributes(std::shared_ptr<torch::jit::Graph>& graph,
                          const torch::jit::Module& module, bool for_evaluation) {
  std::map<const torch::jit::Value*, c10::IValue> values;
  values[graph->inputs().at(0)] = module._ivalue();
  for (torch::jit::Node* node : all_nodes(graph->block())) {
    if (node->kind() != c10::prim::GetAttr) continue;
    auto base = values.find(node->input(0));
    if (base == values.end() || !base->second.isObject()) continue;
    const auto& object = base->second.toObjectRef();
    const std::string name = node->s(c10::attr::name);
    const auto slot = object.type()->findAttributeSlot(name);
    if (!slot) continue;
    const c10::IValue value = object.getSlot(*slot);
    values[node->output()] = value;
    const bool flag = name == "training"
                          ? for_evaluation
                          : value.isBool() || value.isInt() || value.isDouble() || value.isString();
    if (!flag) continue;
    torch::jit::WithInsertPoint guard(node);
    node->output()->replaceAllUsesWith(
        graph->insertConstant(name == "training" ? c10::IValue(false) : value));
  }
  // Resolves the branches (and computes whatever else now has constant inputs). Also when no
  // attribute was folded: a functional call such as F.relu inlines as a branch on its constant
  // `inplace` argument, whose relu lies in the top-level block only once that is resolved.
  torch::jit::ConstantPropagation(graph, /*ignore_custom_classes=*/true);
  torch::jit::EliminateDeadCode(graph);
}

std::shared_ptr<torch::jit::Graph> inlined_forward(const torch::jit::Module& module,
                                                   ForwardGraph which, bool for_evaluation) {
  std::shared_ptr<torch::jit::Graph> graph = module.get_method("forward").graph();
  if (which == ForwardGraph::kCopy) graph = graph->copy();
  inline_calls(*graph);
  fold_flag_attributes(graph, module, for_evaluation);
  return graph;
}

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

std::string weight_owner_of(const std::string& path) {
  const std::string suffix = ".weight";
  if (path.size() <= suffix.size() ||
      path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return "";
  }
  return path.substr(0, path.size() - suffix.size());
}

std::map<const torch::jit::Node*, std::string> node_names(torch::jit::Graph& graph) {
  std::map<const torch::jit::Node*, std::string> names;
  std::map<std::string, int> seen;
  const auto paths = attribute_paths(graph);
  // A saved inlined graph (model_qat.pt) has no call stacks left: a weighted op is named by the
  // module its weight belongs to (read directly, or through its fake-quant).
  auto owner = [&](const torch::jit::Value* v) {
    const auto it = paths.find(v);
    return it == paths.end() ? std::string() : weight_owner_of(it->second);
  };
  auto weight_owner = [&](const torch::jit::Node* node) {
    for (const torch::jit::Value* input : node->inputs()) {
      std::string name = owner(input);
      if (name.empty() && !input->node()->inputs().empty()) name = owner(input->node()->input(0));
      if (!name.empty()) return name;
    }
    return std::string();
  };
  for (const torch::jit::Node* node : graph.block()->nodes()) {
    if (node->outputs().size() != 1 || !node->output()->type()->cast<c10::TensorType>()) continue;
    std::string name = scope_of(node);
    if (name.empty()) name = weight_owner(node);
    if (name.empty()) {
      name = node->kind().toUnqualString();
      if (name.size() > 1 && name.back() == '_') name.pop_back();
      const int index = seen[name]++;
      if (index > 0) name += "_" + std::to_string(index);
    }
    names[node] = name;
  }
  return names;
}

std::string describe_node(const torch::jit::Node* n,
                          const std::map<const torch::jit::Node*, std::string>& names) {
  const auto named = names.find(n);
  const std::string where = named != names.end() ? named->second : scope_of(n);
  return std::string(n->kind().toQualString()) + (where.empty() ? "" : " (" + where + ")");
}

std::vector<FunctionalOp> functional_ops(torch::jit::Graph& graph,
                                         const std::set<std::string>& leaves) {
  std::vector<FunctionalOp> out;
  std::map<std::string, int> seen;
  // Only the top-level block: calls inside control flow (BatchNorm's `num_batches_tracked += 1`
  // under `if self.training`, say) are bookkeeping, not data-path ops, and carry no call stack.
  for (torch::jit::Node* node : graph.block()->nodes()) {
    auto it = functional_kinds().find(node->kind().toQualString());
    if (it == functional_kinds().end()) continue;
    if (node->outputs().size() != 1 || !node->output()->type()->cast<c10::TensorType>()) continue;
    const std::string scope = scope_of(node);
    if (leaves.count(scope)) continue;  // the body of a module op, not a functional call
    const std::string base = (scope.empty() ? "" : scope + ".") + it->second;
    const int index = seen[base]++;
    FunctionalOp f;
    f.op.name = index == 0 ? base : base + "_" + std::to_string(index);
    f.op.type = it->second;
    f.op.functional = true;
    f.node = node;
    out.push_back(f);
  }
  return out;
}

const std::vector<std::string>& anchor_kinds(const std::string& module_type) {
  static const std::map<std::string, std::vector<std::string>> table = {
      {"Conv1d", {"aten::conv1d", "aten::_convolution"}},
      {"Conv2d", {"aten::conv2d", "aten::_convolution"}},
      {"Conv3d", {"aten::conv3d", "aten::_convolution"}},
      {"Linear", {"aten::linear"}},
      {"ReLU", {"aten::relu", "aten::relu_"}},
      {"ReLU6", {"aten::hardtanh", "aten::hardtanh_", "aten::relu6"}},
      {"Hardtanh", {"aten::hardtanh", "aten::hardtanh_"}},
      {"Hardswish", {"aten::hardswish", "aten::hardswish_"}},
      {"Sigmoid", {"aten::sigmoid"}},
      {"SiLU", {"aten::silu", "aten::silu_"}},
      {"Tanh", {"aten::tanh"}},
      {"GELU", {"aten::gelu"}},
      {"LeakyReLU", {"aten::leaky_relu", "aten::leaky_relu_"}},
      {"BatchNorm1d", {"aten::batch_norm"}},
      {"BatchNorm2d", {"aten::batch_norm"}},
      {"MaxPool2d", {"aten::max_pool2d"}},
      {"AvgPool2d", {"aten::avg_pool2d"}},
      {"AdaptiveAvgPool2d", {"aten::adaptive_avg_pool2d"}},
      {"Flatten", {"aten::flatten"}},
      {"Dropout", {"aten::dropout", "aten::dropout_"}},
  };
  static const std::vector<std::string> none;
  auto it = table.find(module_type);
  return it == table.end() ? none : it->second;
}

namespace {

// Whether every use of list `v` is an append to it (whose result nothing reads) or a cat of it,
// in `block`.
bool only_appended_and_concatenated(const torch::jit::Value* v, const torch::jit::Block* block) {
  for (const auto& u : v->uses()) {
    const bool append = is(u.user, "aten::append") && !u.user->output()->hasUses();
    if (u.user->owningBlock() != block || u.offset != 0 || (!append && !is(u.user, "aten::cat"))) {
      return false;
    }
  }
  return true;
}

}  // namespace

void snapshot_appended_lists(torch::jit::Graph& graph) {
  std::map<const torch::jit::Value*, std::vector<torch::jit::Value*>> elements;
  std::vector<torch::jit::Node*> appends;
  for (torch::jit::Node* n : graph.block()->nodes()) {
    if (n->kind() == c10::prim::ListConstruct &&
        only_appended_and_concatenated(n->output(), graph.block())) {
      elements[n->output()] = n->inputs().vec();
    } else if (is(n, "aten::append") && elements.count(n->input(0))) {
      elements[n->input(0)].push_back(n->input(1));
      appends.push_back(n);
    } else if (is(n, "aten::cat") && elements.count(n->input(0))) {
      torch::jit::WithInsertPoint guard(n);
      const auto& items = elements[n->input(0)];
      const c10::TypePtr type = n->input(0)->type()->containedType(0);
      n->replaceInput(0, graph.insertNode(graph.createList(type, items))->output());
    }
  }
  for (auto it = appends.rbegin(); it != appends.rend(); ++it) {
    torch::jit::Node* list = (*it)->input(0)->node();
    (*it)->destroy();
    if (!list->output()->hasUses()) list->destroy();
  }
}

std::vector<torch::jit::Node*> all_nodes(torch::jit::Block* block) {
  std::vector<torch::jit::Node*> out;
  for (torch::jit::Node* node : block->nodes()) {
    out.push_back(node);
    for (torch::jit::Block* sub : node->blocks()) {
      auto inner = all_nodes(sub);
      out.insert(out.end(), inner.begin(), inner.end());
    }
  }
  return out;
}

c10::IValue attribute_at(const torch::jit::Module& root, const std::string& path) {
  torch::jit::Module m = root;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = path.find('.', start);
    const std::string name =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (dot == std::string::npos) return m.attr(name);
    m = m.attr(name).toModule();
    start = dot + 1;
  }
}

std::map<const torch::jit::Value*, std::string> attribute_paths(torch::jit::Graph& graph) {
  std::map<const torch::jit::Value*, std::string> paths;
  paths[graph.inputs().at(0)] = "";
  for (torch::jit::Node* node : all_nodes(graph.block())) {
    if (node->kind() != c10::prim::GetAttr) continue;
    auto base = paths.find(node->input(0));
    if (base == paths.end()) continue;
    const std::string name = node->s(c10::attr::name);
    paths[node->output()] = base->second.empty() ? name : base->second + "." + name;
  }
  return paths;
}

torch::jit::Node* single_data_use(const torch::jit::Value* v) {
  static const c10::Symbol dim = sym("aten::dim");
  static const c10::Symbol size = sym("aten::size");
  torch::jit::Node* found = nullptr;
  for (const auto& u : v->uses()) {
    if (u.user->kind() == dim || u.user->kind() == size) continue;
    if (found != nullptr || u.offset != 0) return nullptr;
    found = u.user;
  }
  return found;
}

torch::jit::Node* only_use(const torch::jit::Value* v, std::initializer_list<const char*> kinds) {
  torch::jit::Node* user = single_data_use(v);
  if (user == nullptr) return nullptr;
  for (const char* kind : kinds) {
    if (is(user, kind)) return user;
  }
  return nullptr;
}

ConvBatchNorm batch_norm_after(torch::jit::Node* conv, const char* site_kind) {
  if (!is(conv, "aten::conv2d")) return {};
  ConvBatchNorm found;
  const torch::jit::Value* v = conv->output();
  if (site_kind != nullptr) {
    found.site = only_use(v, {site_kind});
    if (found.site != nullptr) v = found.site->output();
  }
  found.batch_norm = only_use(v, {"aten::batch_norm"});
  return found.batch_norm == nullptr ? ConvBatchNorm{} : found;
}

at::Tensor fold_batchnorm_into(at::Tensor& weight, at::Tensor& bias, const at::Tensor& gamma,
                               const at::Tensor& beta, const at::Tensor& mean,
                               const at::Tensor& var, double eps) {
  const at::Tensor k = gamma / at::sqrt(var + eps);
  std::vector<int64_t> shape(static_cast<std::size_t>(weight.dim()), 1);
  shape[0] = weight.size(0);
  weight = weight * k.reshape(shape);
  bias = (bias - mean) * k + beta;
  return k;
}

}  // namespace shrink::detail
