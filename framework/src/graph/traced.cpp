#include "graph/traced.hpp"

#include "graph/graph_utils.hpp"

#include <shrink/graph/model.hpp>

#include <torch/csrc/jit/ir/constants.h>

#include <string>

namespace shrink::detail {

namespace {

// The number of spatial dimensions of a convolution from its stride list: 0 when unknown.
std::size_t spatial_dims(const torch::jit::Value* stride) {
  const torch::jit::Node* list = stride->node();
  if (list->kind() == c10::prim::ListConstruct) return list->inputs().size();
  if (auto constant = torch::jit::toIValue(stride)) {
    if (constant->isIntList()) return constant->toIntList().size();
  }
  return 0;
}

// aten::_convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
// groups, benchmark, deterministic, cudnn_enabled, allow_tf32).
void rewrite_convolution(torch::jit::Graph& graph, torch::jit::Node* node) {
  const auto transposed = torch::jit::constant_as<bool>(node->input(6));
  const std::size_t dims = spatial_dims(node->input(3));
  if (!transposed || *transposed || dims < 1 || dims > 3) return;
  const std::string kind = "aten::conv" + std::to_string(dims) + "d";
  torch::jit::WithInsertPoint guard(node);
  torch::jit::Node* conv = graph.insertNode(graph.create(
      sym(kind.c_str()), {node->input(0), node->input(1), node->input(2), node->input(3),
                          node->input(4), node->input(5), node->input(8)}));
  conv->output()->setType(node->output()->type());
  conv->setSourceRange(node->sourceRange());
  node->output()->replaceAllUsesWith(conv->output());
  node->destroy();
}

// The index of the `training` argument of a BatchNorm or Dropout module's call, -1 for any other.
int training_argument(const std::string& module_type, const torch::jit::Node* node) {
  if (module_type.rfind("BatchNorm", 0) == 0 && is(node, "aten::batch_norm")) {
    // Without running statistics BatchNorm always uses the batch's: nothing was baked in.
    return node->input(3)->type()->kind() == c10::TypeKind::NoneType ? -1 : 5;
  }
  if (module_type.find("Dropout") != std::string::npos &&
      (is(node, "aten::dropout") || is(node, "aten::feature_dropout") ||
       is(node, "aten::alpha_dropout") || is(node, "aten::feature_alpha_dropout"))) {
    return 2;
  }
  return -1;
}

void follow_training(torch::jit::Graph& graph, torch::jit::Node* node, int argument) {
  if (argument < 0 || node->input(argument)->node()->kind() != c10::prim::Constant) return;
  torch::jit::WithInsertPoint guard(node);
  node->replaceInput(argument, graph.insertGetAttr(graph.inputs().at(0), "training"));
}

}  // namespace

void rewrite_traced(torch::jit::Module& module) {
  for (const auto& item : module.named_modules()) {
    const std::string type =
        op_type_from_qualified_name(item.value.type()->name()->qualifiedName());
    for (const auto& method : item.value.get_methods()) {
      const std::shared_ptr<torch::jit::Graph> graph = method.graph();
      for (torch::jit::Node* node : all_nodes(graph->block())) {
        if (is(node, "aten::_convolution")) {
          rewrite_convolution(*graph, node);
        } else {
          follow_training(*graph, node, training_argument(type, node));
        }
      }
    }
  }
}

}  // namespace shrink::detail
