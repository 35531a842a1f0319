#include <shrink/core/error.hpp>
#include <shrink/graph/quantized_model.hpp>

#include "graph/graph_utils.hpp"

#include <shrink/core/logging.hpp>

#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/library.h>
#include <torch/script.h>

#include <map>
#include <optional>
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

using detail::is;
using detail::sym;

torch::jit::Value* insert_quantize(torch::jit::Graph& graph, torch::jit::Value* x, int quantizer,
                                   int site) {
  static const c10::Symbol kQuantize = sym("shrink::quantize");
  return graph.insert(kQuantize, {x, static_cast<int64_t>(quantizer), static_cast<int64_t>(site)});
}

int target_index(const std::string& target) {
  return std::stoi(target.substr(target.rfind('_') + 1));
}

// A read of the attribute at `path` ("layer1.0.bn1.running_var") from `self`, at the insert point.
torch::jit::Value* read_path(torch::jit::Graph& graph, torch::jit::Value* self,
                             const std::string& path) {
  torch::jit::Value* v = self;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = path.find('.', start);
    v = graph.insertGetAttr(
        v, path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

std::string parent_of(const std::string& path) { return path.substr(0, path.rfind('.')); }

// A Conv2d -> [its output site] -> BatchNorm2d pair as the graph has it, with the attribute paths
// of its parameters ("" for one that is not a plain module attribute).
struct PairParts {
  torch::jit::Node* conv = nullptr;
  torch::jit::Node* out_site = nullptr;  // the conv's output site, between the two
  torch::jit::Node* bn = nullptr;
  torch::jit::Node* weight_site = nullptr;  // the conv's weight site
  torch::jit::Value* weight = nullptr;      // what the weight site (or the conv) reads
  torch::jit::Value* bias = nullptr;
  std::string weight_path, bias_path, gamma, beta, mean, var;
  c10::optional<double> eps;
  bool no_bias = false;
  bool optional_bias = false;  // an Optional[Tensor] attribute that holds a tensor
};

std::optional<PairParts> pair_parts(torch::jit::Node* conv,
                                    const std::map<const torch::jit::Value*, std::string>& paths,
                                    const torch::jit::Module& module) {
  static const c10::Symbol kQuantize = sym("shrink::quantize");
  auto path_of = [&](const torch::jit::Value* v) {
    auto it = paths.find(v);
    return it == paths.end() ? std::string() : it->second;
  };
  const detail::ConvBatchNorm found = detail::batch_norm_after(conv, "shrink::quantize");
  if (found.batch_norm == nullptr) return std::nullopt;
  PairParts p;
  p.conv = conv;
  p.out_site = found.site;
  p.bn = found.batch_norm;
  p.weight_site = conv->input(1)->node()->kind() == kQuantize ? conv->input(1)->node() : nullptr;
  p.weight = p.weight_site ? p.weight_site->input(0) : conv->input(1);
  p.weight_path = path_of(p.weight);
  p.gamma = path_of(p.bn->input(1));
  p.beta = path_of(p.bn->input(2));
  p.mean = path_of(p.bn->input(3));
  p.var = path_of(p.bn->input(4));
  p.eps = torch::jit::constant_as<double>(p.bn->input(7));
  p.bias = conv->input(2);
  p.bias_path = path_of(p.bias);
  // Conv2d declares its bias Optional[Tensor]: what the attribute holds decides.
  p.no_bias = p.bias->type()->kind() == c10::TypeKind::NoneType;
  if (!p.no_bias && p.bias->type()->kind() == c10::TypeKind::OptionalType && !p.bias_path.empty()) {
    p.no_bias = detail::attribute_at(module, p.bias_path).isNone();
    p.optional_bias = !p.no_bias;
  }
  return p;
}

// The part of the pair that is not a plain module attribute (or constant); "" when none is.
std::string unfoldable_part(const PairParts& p) {
  if (p.weight_path.empty()) return "the convolution's weight";
  if (p.gamma.empty()) return "the BatchNorm's weight";
  if (p.beta.empty()) return "the BatchNorm's bias";
  if (p.mean.empty()) return "the BatchNorm's running_mean";
  if (p.var.empty()) return "the BatchNorm's running_var";
  if (!p.eps) return "the BatchNorm's eps";
  if (!p.no_bias &&
      (p.bias_path.empty() || (!p.optional_bias && !p.bias->type()->cast<c10::TensorType>()))) {
    return "the convolution's bias";
  }
  return "";
}

// sf = gamma / sqrt(running_var + eps), computed before the weight site (or the convolution).
torch::jit::Value* insert_fold_scale(torch::jit::Graph& graph, const PairParts& p) {
  torch::jit::Value* self = graph.inputs().at(0);
  torch::jit::WithInsertPoint guard(p.weight_site ? p.weight_site : p.conv);
  torch::jit::Value* std_dev = graph.insert(
      sym("aten::sqrt"), {graph.insert(sym("aten::add"), {read_path(graph, self, p.var), *p.eps})});
  return graph.insert(sym("aten::div"), {read_path(graph, self, p.gamma), std_dev});
}

// The weight site (or the convolution) sees W * sf; returns that value.
torch::jit::Value* fold_weight(torch::jit::Graph& graph, const PairParts& p,
                               torch::jit::Value* sf) {
  torch::jit::WithInsertPoint guard(p.weight_site ? p.weight_site : p.conv);
  std::vector<int64_t> shape(4, 1);
  shape[0] = -1;
  torch::jit::Value* folded =
      graph.insert(sym("aten::mul"), {p.weight, graph.insert(sym("aten::reshape"), {sf, shape})});
  if (p.weight_site) {
    p.weight_site->replaceInput(0, folded);
  } else {
    p.conv->replaceInput(1, folded);
  }
  return folded;
}

// y = conv(x, Q(W * sf), None) / sf + b, what the BatchNorm now reads: it normalises what the
// unfolded convolution computed. Returns y.
torch::jit::Value* unfold_output(torch::jit::Graph& graph, const PairParts& p,
                                 torch::jit::Value* sf) {
  torch::jit::Node* conv = p.conv;
  torch::jit::WithInsertPoint guard(conv->next());
  const std::vector<int64_t> per_channel = {1, -1, 1, 1};
  torch::jit::Node* div =
      graph
          .insert(sym("aten::div"),
                  {conv->output(), graph.insert(sym("aten::reshape"), {sf, per_channel})})
          ->node();
  torch::jit::Value* y = div->output();
  if (!p.no_bias) {
    torch::jit::Value* b =
        p.optional_bias ? graph.insertUncheckedCast(p.bias, c10::TensorType::get()) : p.bias;
    y = graph.insert(sym("aten::add"), {y, graph.insert(sym("aten::reshape"), {b, per_channel})});
    torch::jit::WithInsertPoint before(conv);
    conv->replaceInput(2, graph.insertConstant(c10::IValue()));
  }
  conv->output()->replaceAllUsesWith(y);
  div->replaceInput(0, conv->output());
  return y;
}

// The conv's output site quantizes the pair's output: after the BatchNorm. Its uses (the
// BatchNorm, and shape checks before it) read the unfolded value instead.
void move_site_after_batch_norm(const PairParts& p) {
  p.out_site->output()->replaceAllUsesWith(p.out_site->input(0));
  p.out_site->moveAfter(p.bn);
  p.bn->output()->replaceAllUsesWith(p.out_site->output());
  p.out_site->replaceInput(0, p.bn->output());
}

}  // namespace

struct QuantizedModel::FoldedPair {
  std::string conv, bn;  // module paths
  std::string bias;      // the conv's bias attribute path; empty when it has none
  double eps = 1e-5;
  torch::jit::Node* conv_node = nullptr;
  torch::jit::Node* bn_node = nullptr;
  torch::jit::Value* folded_weight = nullptr;  // W * sf
  torch::jit::Value* bias_value = nullptr;     // the conv's bias read, when it has one
  torch::jit::Value* unfolded = nullptr;       // conv(...) / sf + b, what the BatchNorm reads
};

QuantizedModel::~QuantizedModel() = default;

std::vector<std::string> QuantizedModel::folded_batchnorms() const {
  std::vector<std::string> out;
  for (const auto& p : folded_) out.push_back(p->conv + " + " + p->bn);
  return out;
}

QuantizedModel::QuantizedModel(Model& model, QuantizerInstance& quantizer,
                               const std::vector<PlannedSite>& sites, bool fold_bn)
    : model_(&model), quantizer_(&quantizer), sites_(sites) {
  // A method that has run keeps the execution plan it compiled, and editing its graph afterwards
  // changes nothing that runs. The rewrite therefore goes into a clone, whose methods are new.
  model.module() = model.module().clone(/*inplace=*/true);  // same parameter tensors
  torch::jit::Module& module = model.module();
  std::shared_ptr<torch::jit::Graph> graph =
      detail::inlined_forward(module, detail::ForwardGraph::kOwn);

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
      spec.sample = detail::attribute_at(module, planned.op_name + "." + planned.target).toTensor();
    }
    const int site = quantizer.add_site(spec);
    site_ids_.push_back(site);

    if (planned.target == "weight" || planned.target == "bias") {
      const auto& reads = attr_reads[planned.op_name + "." + planned.target];
      SHRINK_CHECK(!reads.empty(),
                   "the forward graph never reads " << planned.op_name << "." << planned.target);
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
        anchor->replaceInput(index,
                             insert_quantize(*graph, anchor->input(index), quantizer.id(), site));
      } else {
        SHRINK_CHECK(index == 0,
                     "op '" << op->name << "' has one output; use _output_ or _output_0");
        torch::jit::WithInsertPoint guard(anchor->next());
        torch::jit::Value* q = insert_quantize(*graph, anchor->output(), quantizer.id(), site);
        anchor->output()->replaceAllUsesAfterNodeWith(q->node(), q);
      }
    }
  }
  if (fold_bn) fold_batchnorms(*graph);
  graph->lint();
}

// Conv2d -> [its output site] -> BatchNorm2d pairs, rewritten for simulated folding (see the
// header). Pairs whose parts are not plain module attributes are left as they are, with a warning.
void QuantizedModel::fold_batchnorms(torch::jit::Graph& graph) {
  const auto paths = detail::attribute_paths(graph);
  std::vector<torch::jit::Node*> convs;
  for (torch::jit::Node* n : graph.nodes()) {
    if (is(n, "aten::conv2d")) convs.push_back(n);
  }
  for (torch::jit::Node* conv : convs) {
    const std::optional<PairParts> parts = pair_parts(conv, paths, model_->module());
    if (!parts) continue;
    const std::string missing = unfoldable_part(*parts);
    if (!missing.empty()) {
      const std::string where =
          parts->weight_path.empty() ? detail::scope_of(conv) : parent_of(parts->weight_path);
      logging::warn("fold_bn: " + where + " and the BatchNorm after it are left unfolded: " +
                    missing + " is not a plain module attribute (or constant)");
      continue;
    }
    auto pair = std::make_unique<FoldedPair>();
    pair->conv = parent_of(parts->weight_path);
    pair->bn = parent_of(parts->var);
    pair->bias = parts->no_bias ? "" : parts->bias_path;
    pair->eps = *parts->eps;
    pair->conv_node = conv;
    pair->bn_node = parts->bn;
    pair->bias_value = parts->no_bias ? nullptr : parts->bias;
    torch::jit::Value* sf = insert_fold_scale(graph, *parts);
    pair->folded_weight = fold_weight(graph, *parts, sf);
    pair->unfolded = unfold_output(graph, *parts, sf);
    if (parts->out_site != nullptr) move_site_after_batch_norm(*parts);
    folded_.push_back(std::move(pair));
  }
}

void QuantizedModel::bake_folded_batchnorms() {
  if (folded_.empty()) return;
  torch::jit::Module& module = model_->module();
  auto graph = module.get_method("forward").graph();
  auto tensor = [&](const std::string& path) {
    return detail::attribute_at(module, path).toTensor();
  };
  torch::NoGradGuard no_grad;
  for (const auto& p : folded_) {
    at::Tensor w = tensor(p->conv + ".weight").to(at::kFloat);
    at::Tensor b = p->bias.empty() ? at::zeros({w.size(0)}) : tensor(p->bias).to(at::kFloat);
    detail::fold_batchnorm_into(w, b, tensor(p->bn + ".weight").to(at::kFloat),
                                tensor(p->bn + ".bias").to(at::kFloat),
                                tensor(p->bn + ".running_mean").to(at::kFloat),
                                tensor(p->bn + ".running_var").to(at::kFloat), p->eps);
    // The convolution's own parameters take the folded values (model_qat.pt carries them, and the
    // int8 export reads them as it reads any weight); the weight site reads them directly again.
    tensor(p->conv + ".weight").copy_(w);
    p->folded_weight->replaceAllUsesWith(p->folded_weight->node()->input(0));
    if (p->bias_value != nullptr) {
      tensor(p->bias).copy_(b);
      p->conv_node->replaceInput(2, p->bias_value);
    } else {
      torch::jit::WithInsertPoint guard(p->conv_node);
      p->conv_node->replaceInput(2, graph->insertConstant(b.contiguous()));
    }
    p->bn_node->output()->replaceAllUsesWith(p->conv_node->output());
    p->unfolded->replaceAllUsesWith(p->conv_node->output());  // the BatchNorm's shape checks
    // Dead code elimination keeps batch_norm (its running statistics may be written): it goes here.
    p->bn_node->destroy();
  }
  folded_.clear();  // the nodes they point at go now
  torch::jit::EliminateDeadCode(graph);
}

void QuantizedModel::train(bool on) {
  model_->module().train(on);
  quantizer_->set_training(on);
}

at::Tensor QuantizedModel::forward(const at::Tensor& input) {
  return model_->module().forward({input}).toTensor();
}

}  // namespace shrink
