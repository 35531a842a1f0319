#include <shrink/error.hpp>
#include <shrink/quantized_model.hpp>

#include "graph_utils.hpp"

#include <torch/library.h>
#include <torch/script.h>

#include <set>

namespace shrink {
namespace {

at::Tensor quantize_op(const at::Tensor& x, int64_t quantizer, int64_t site) {
  QuantizerInstance* q = QuantizerInstance::from_id(quantizer);
  TORCH_CHECK(q != nullptr, "shrink::quantize: quantizer #", quantizer, " no longer exists");
  return q->quantize(static_cast<int>(site), x);
}

}  // namespace
}  // namespace shrink

// CONSERVATIVE alias analysis: the op updates plugin state (tracked ranges, counters), so the JIT
// must neither merge two calls nor drop one whose result looks unused.
TORCH_LIBRARY(shrink, m) {
  m.def(torch::schema("shrink::quantize(Tensor x, int quantizer, int site) -> Tensor",
                      c10::AliasAnalysisKind::CONSERVATIVE));
}
// CompositeImplicitAutograd: autograd sees through the kernel to the bridge's own autograd node.
TORCH_LIBRARY_IMPL(shrink, CompositeImplicitAutograd, m) {
  m.impl("quantize", &shrink::quantize_op);
}

namespace shrink {
namespace {

torch::jit::Value* insert_quantize(torch::jit::Graph& graph, torch::jit::Value* x, int quantizer,
                                   int site) {
  static const c10::Symbol kQuantize = c10::Symbol::fromQualString("shrink::quantize");
  return graph.insert(kQuantize, {x, static_cast<int64_t>(quantizer), static_cast<int64_t>(site)});
}

// module.attr() takes one name; follow "layer1.0.conv1.weight" a component at a time.
c10::IValue attribute_at(const torch::jit::Module& root, const std::string& path) {
  torch::jit::Module m = root;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = path.find('.', start);
    const std::string name = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (dot == std::string::npos) return m.attr(name);
    m = m.attr(name).toModule();
    start = dot + 1;
  }
}

int target_index(const std::string& target) {
  return std::stoi(target.substr(target.rfind('_') + 1));
}

}  // namespace

QuantizedModel::QuantizedModel(Model& model, QuantizerInstance& quantizer,
                               const std::vector<PlannedSite>& sites)
    : model_(&model), quantizer_(&quantizer), sites_(sites) {
  // A method that has run keeps the execution plan it compiled, and editing its graph afterwards
  // changes nothing that runs. The rewrite therefore goes into a clone, whose methods are new.
  model.module() = model.module().clone(/*inplace=*/true);  // same parameter tensors
  torch::jit::Module& module = model.module();
  std::shared_ptr<torch::jit::Graph> graph = module.get_method("forward").graph();
  detail::inline_calls(*graph);
  detail::fold_flag_attributes(graph, module);

  std::set<std::string> leaves;
  for (const auto& op : model.ops()) {
    if (!op.functional) leaves.insert(op.name);
  }
  // Anchors are found before any insertion so that inserted nodes never shift the lookups.
  std::map<std::string, torch::jit::Node*> functional;
  for (const auto& f : detail::functional_ops(*graph, leaves)) functional[f.op.name] = f.node;
  std::map<std::string, std::vector<torch::jit::Node*>> module_anchors;
  std::map<std::string, std::vector<torch::jit::Node*>> attr_reads;
  const auto paths = detail::attribute_paths(*graph);
  for (torch::jit::Node* node : detail::all_nodes(graph->block())) {
    if (node->kind() == c10::prim::GetAttr) {
      auto it = paths.find(node->output());
      if (it != paths.end()) attr_reads[it->second].push_back(node);
      continue;
    }
    const std::string scope = detail::scope_of(node);
    if (!leaves.count(scope)) continue;
    const OpInstance* op = model.find_op(scope);
    const auto& kinds = detail::anchor_kinds(op->type);
    if (std::find(kinds.begin(), kinds.end(), node->kind().toQualString()) != kinds.end()) {
      module_anchors[scope].push_back(node);
    }
  }

  for (const PlannedSite& planned : sites) {
    SiteSpec spec;
    spec.module_name = planned.op_name;
    spec.module_type = planned.op_type;
    spec.target = planned.target;
    spec.quant_type = planned.quant_type;
    spec.config = planned.config;
    const OpInstance* op = model.find_op(planned.op_name);
    SHRINK_CHECK(op != nullptr, "op '" << planned.op_name << "' is not in the model");
    if (planned.target == "weight" || planned.target == "bias") {
      spec.sample = attribute_at(module, planned.op_name + "." + planned.target).toTensor();
    }
    const int site = quantizer.add_site(spec);
    site_ids_.push_back(site);

    if (planned.target == "weight" || planned.target == "bias") {
      const auto& reads = attr_reads[planned.op_name + "." + planned.target];
      SHRINK_CHECK(!reads.empty(), "the forward graph never reads " << planned.op_name << "."
                                                                   << planned.target);
      for (torch::jit::Node* read : reads) {
        torch::jit::WithInsertPoint guard(read->next());
        torch::jit::Value* q = insert_quantize(*graph, read->output(), quantizer.id(), site);
        read->output()->replaceAllUsesAfterNodeWith(q->node(), q);
      }
      continue;
    }

    std::vector<torch::jit::Node*> anchors;
    if (op->functional) {
      anchors.push_back(functional.at(op->name));
    } else {
      SHRINK_CHECK(!detail::anchor_kinds(op->type).empty(),
                   "op '" << op->name << "' is a " << op->type
                          << ", whose inputs and outputs Shrink cannot locate yet; quantize its "
                             "weight only, or select its neighbours instead");
      anchors = module_anchors[op->name];
      SHRINK_CHECK(!anchors.empty(), "op '" << op->name << "' (" << op->type
                                            << ") is never called by the model's forward");
    }
    const int index = target_index(planned.target);
    for (torch::jit::Node* anchor : anchors) {
      if (planned.quant_type == QuantType::kInput) {
        SHRINK_CHECK(index < static_cast<int>(anchor->inputs().size()) &&
                         anchor->input(index)->type()->cast<c10::TensorType>(),
                     "op '" << op->name << "' has no tensor input " << index);
        torch::jit::WithInsertPoint guard(anchor);
        anchor->replaceInput(index, insert_quantize(*graph, anchor->input(index), quantizer.id(), site));
      } else {
        SHRINK_CHECK(index == 0, "op '" << op->name << "' has one output; use _output_ or _output_0");
        torch::jit::WithInsertPoint guard(anchor->next());
        torch::jit::Value* q = insert_quantize(*graph, anchor->output(), quantizer.id(), site);
        anchor->output()->replaceAllUsesAfterNodeWith(q->node(), q);
      }
    }
  }
  graph->lint();
}

void QuantizedModel::train(bool on) {
  model_->module().train(on);
  quantizer_->set_training(on);
}

at::Tensor QuantizedModel::forward(const at::Tensor& input) {
  return model_->module().forward({input}).toTensor();
}

}  // namespace shrink
