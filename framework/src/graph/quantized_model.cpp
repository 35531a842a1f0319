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

// A quantize call on `node`'s output, inserted right after it; every later use reads the call.
torch::jit::Node* quantize_output(torch::jit::Graph& graph, torch::jit::Node* node, int quantizer,
                                  int site) {
  torch::jit::WithInsertPoint guard(node->next());
  torch::jit::Value* q = insert_quantize(graph, node->output(), quantizer, site);
  node->output()->replaceAllUsesAfterNodeWith(q->node(), q);
  return q->node();
}

// The quantize calls `calls` quantize at the quantizer's site `site`.
void set_site(torch::jit::Graph& graph, const std::vector<torch::jit::Node*>& calls, int site) {
  for (torch::jit::Node* call : calls) {
    torch::jit::WithInsertPoint guard(call);
    call->replaceInput(2, graph.insertConstant(static_cast<int64_t>(site)));
  }
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
  // A channel whose gamma is 0 (pruned with its filter, which filter pruning does) has sf 0 and a
  // zero folded filter: its output is divided by 1 (the zero it is), not by 0 (NaN).
  torch::jit::Value* divisor =
      graph.insert(sym("aten::where"), {graph.insert(sym("aten::eq"), {sf, 0.0}), 1.0, sf});
  torch::jit::Node* div =
      graph
          .insert(sym("aten::div"),
                  {conv->output(), graph.insert(sym("aten::reshape"), {divisor, per_channel})})
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

// Ops whose output holds only values of their input (they pass, move, select or zero them), so
// that a quantized input leaves the output on the same grid, and which the int8 export runs on
// the quantized tensor (export/int8/rules): a site merged through any other op would leave the
// op after it without an input fake-quant, in float. Dropout is the identity in the evaluated and
// int8 models (in training it scales what it keeps, and the merged site no longer sees that).
bool keeps_grid(const torch::jit::Node* n) {
  static const std::set<std::string> kinds = {
      "aten::relu",    "aten::relu_", "aten::max_pool2d", "aten::dropout", "aten::flatten",
      "aten::reshape", "aten::view",  "aten::contiguous", "aten::squeeze", "aten::unsqueeze"};
  return kinds.count(n->kind().toQualString()) != 0;
}

// The planned activation site whose quantize call `v` comes from, directly or through ops that
// keep its grid (appended to `through`, once each); -1 when none does.
int quantized_by(const torch::jit::Value* v, int quantizer, const std::vector<PlannedSite>& sites,
                 std::vector<std::string>& through) {
  static const c10::Symbol kQuantize = sym("shrink::quantize");
  for (const torch::jit::Node* n = v->node();; n = n->input(0)->node()) {
    if (n->kind() == kQuantize) {
      // Another stage's calls quantize for another plugin, with sites of their own.
      const auto index = torch::jit::constant_as<int64_t>(n->input(2));
      if (!index || torch::jit::constant_as<int64_t>(n->input(1)) != quantizer ||
          sites.at(*index).quant_type == QuantType::kWeight)
        return -1;
      return static_cast<int>(*index);
    }
    if (!keeps_grid(n) || n->inputs().empty()) return -1;
    std::string kind = n->kind().toUnqualString();
    if (kind.back() == '_') kind.pop_back();
    // Walked backwards: each op goes in front, so that the list reads in the graph's order.
    if (std::find(through.begin(), through.end(), kind) == through.end()) {
      through.insert(through.begin(), kind);
    }
  }
}

// "quant_bits 8 vs 4, ..." for the settings two sites do not share; "" when they are the same.
std::string settings_difference(const Options& a, const Options& b) {
  std::set<std::string> keys;
  for (const auto& kv : a.entries) keys.insert(kv.first);
  for (const auto& kv : b.entries) keys.insert(kv.first);
  std::string out;
  for (const std::string& key : keys) {
    const std::string* x = a.find(key);
    const std::string* y = b.find(key);
    if (x && y && *x == *y) continue;
    out += (out.empty() ? "" : ", ") + key + " " + (x ? *x : "unset") + " vs " + (y ? *y : "unset");
  }
  return out;
}

}  // namespace

std::string QuantizedModel::SharedPoint::text() const {
  if (range_only) {
    return site + " uses the range of " + into +
           " (a cat's inputs and output share one: the int8 cat copies, not requantizes)";
  }
  std::string via;
  for (const std::string& op : through) via += (via.empty() ? " through " : ", ") + op;
  if (conflict.empty()) {
    return site + " merged into " + into + ": the same tensor" + via +
           ", quantized once with the earlier site's range";
  }
  return site + " and " + into + " quantize the same tensor" + via + " with other settings (" +
         conflict + "): both stay, and an int8 model requantizes between them";
}

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

// Where the sites go in the inlined graph, found before any insertion so that inserted nodes
// never shift the lookups.
struct QuantizedModel::Anchors {
  std::map<std::string, torch::jit::Node*> functional;               // op name -> its call
  std::map<std::string, std::vector<torch::jit::Node*>> modules;     // op name -> its calls
  std::map<std::string, std::vector<torch::jit::Node*>> attr_reads;  // "conv1.weight" -> reads
};

QuantizedModel::QuantizedModel(Model& model, QuantizerInstance& quantizer,
                               const std::vector<PlannedSite>& sites, bool fold_bn)
    : model_(&model), quantizer_(&quantizer) {
  // A method that has run keeps the execution plan it compiled, and editing its graph afterwards
  // changes nothing that runs. The rewrite therefore goes into a clone, whose methods are new.
  model.module() = model.module().clone(/*inplace=*/true);  // same parameter tensors
  std::shared_ptr<torch::jit::Graph> graph =
      detail::inlined_forward(model.module(), detail::ForwardGraph::kOwn);
  const Anchors anchors = find_anchors(*graph);
  // Each call carries its planned site's index until the sites that remain are registered.
  std::vector<std::vector<torch::jit::Node*>> calls;
  for (std::size_t k = 0; k < sites.size(); ++k) {
    calls.push_back(insert_site(*graph, sites[k], static_cast<int>(k), anchors));
  }
  if (fold_bn) fold_batchnorms(*graph);
  merge_shared_points(sites, calls);
  register_sites(*graph, sites, calls);
  graph->lint();
}

QuantizedModel::Anchors QuantizedModel::find_anchors(torch::jit::Graph& graph) const {
  std::set<std::string> leaves;
  for (const auto& op : model_->ops()) {
    if (!op.functional) leaves.insert(op.name);
  }
  Anchors a;
  for (const auto& f : detail::functional_ops(graph, leaves)) a.functional[f.op.name] = f.node;
  const auto paths = detail::attribute_paths(graph);
  for (torch::jit::Node* node : detail::all_nodes(graph.block())) {
    if (node->kind() == c10::prim::GetAttr) {
      auto it = paths.find(node->output());
      if (it != paths.end()) a.attr_reads[it->second].push_back(node);
      continue;
    }
    const std::string scope = detail::scope_of(node);
    if (!leaves.count(scope)) continue;
    const auto& kinds = detail::anchor_kinds(model_->find_op(scope)->type);
    if (std::find(kinds.begin(), kinds.end(), node->kind().toQualString()) != kinds.end()) {
      a.modules[scope].push_back(node);
    }
  }
  return a;
}

std::vector<torch::jit::Node*> QuantizedModel::insert_site(torch::jit::Graph& graph,
                                                           const PlannedSite& planned, int index,
                                                           const Anchors& anchors) {
  const OpInstance* op = model_->find_op(planned.op_name);
  SHRINK_CHECK(op != nullptr, "op '" << planned.op_name << "' is not in the model");
  std::vector<torch::jit::Node*> calls;
  if (planned.target == "weight" || planned.target == "bias") {
    const auto reads = anchors.attr_reads.find(planned.key());
    SHRINK_CHECK(reads != anchors.attr_reads.end(),
                 "the forward graph never reads " << planned.key());
    for (torch::jit::Node* read : reads->second) {
      calls.push_back(quantize_output(graph, read, quantizer_->id(), index));
    }
    return calls;
  }
  std::vector<torch::jit::Node*> ops;
  if (op->functional) {
    ops.push_back(anchors.functional.at(op->name));
  } else {
    SHRINK_CHECK(!detail::anchor_kinds(op->type).empty(),
                 "op '" << op->name << "' is a " << op->type
                        << ", whose inputs and outputs Shrink cannot locate yet; quantize its "
                           "weight only, or select its neighbours instead");
    const auto found = anchors.modules.find(op->name);
    SHRINK_CHECK(found != anchors.modules.end(), "op '"
                                                     << op->name << "' (" << op->type
                                                     << ") is never called by the model's forward");
    ops = found->second;
  }
  const int at = target_index(planned.target);
  for (torch::jit::Node* anchor : ops) {
    if (planned.quant_type == QuantType::kInput) {
      SHRINK_CHECK(at < static_cast<int>(anchor->inputs().size()) &&
                       anchor->input(at)->type()->cast<c10::TensorType>(),
                   "op '" << op->name << "' has no tensor input " << at);
      torch::jit::WithInsertPoint guard(anchor);
      torch::jit::Value* q = insert_quantize(graph, anchor->input(at), quantizer_->id(), index);
      anchor->replaceInput(at, q);
      calls.push_back(q->node());
    } else {
      SHRINK_CHECK(at == 0, "op '" << op->name << "' has one output; use _output_ or _output_0");
      calls.push_back(quantize_output(graph, anchor, quantizer_->id(), index));
    }
  }
  return calls;
}

// Two activation sites on one tensor (a convolution's output and the next one's input, say)
// quantize it twice: the second rounds values already on the first one's grid, and the int8
// model pays a dequantize + quantize between them. With the same settings the second goes (the
// first one's range serves both); with others both stay, and the plan says so.
void QuantizedModel::merge_shared_points(const std::vector<PlannedSite>& sites,
                                         std::vector<std::vector<torch::jit::Node*>>& calls) {
  std::vector<int> into(sites.size(), -1);
  std::set<std::string> owners;  // sites whose range others share keep their calls
  for (const PlannedSite& s : sites) owners.insert(s.range_of);
  for (std::size_t k = 0; k < sites.size(); ++k) {
    if (sites[k].quant_type == QuantType::kWeight || calls[k].empty() ||
        owners.count(sites[k].key())) {
      continue;
    }
    std::set<int> sources;
    std::vector<std::string> through;
    for (torch::jit::Node* call : calls[k]) {
      sources.insert(quantized_by(call->input(0), quantizer_->id(), sites, through));
    }
    if (sources.size() != 1 || *sources.begin() < 0) continue;
    const int j = *sources.begin();
    SharedPoint point{sites[k].key(), sites[j].key(), through,
                      settings_difference(sites[k].config, sites[j].config)};
    if (point.conflict.empty()) into[k] = j;
    shared_points_.push_back(std::move(point));
  }
  for (std::size_t k = 0; k < sites.size(); ++k) {
    if (into[k] < 0) continue;
    for (torch::jit::Node* call : calls[k]) {
      call->output()->replaceAllUsesWith(call->input(0));
      call->destroy();
    }
    calls[k].clear();
  }
}

void QuantizedModel::register_sites(torch::jit::Graph& graph, const std::vector<PlannedSite>& sites,
                                    const std::vector<std::vector<torch::jit::Node*>>& calls) {
  torch::jit::Module& module = model_->module();
  std::map<std::string, int> registered;  // "op.target" -> the quantizer's site
  for (std::size_t k = 0; k < sites.size(); ++k) {
    const PlannedSite& planned = sites[k];
    if (calls[k].empty() || !planned.range_of.empty()) continue;  // merged, or a range borrowed
    SiteSpec spec;
    spec.module_name = planned.op_name;
    spec.module_type = planned.op_type;
    spec.target = planned.target;
    spec.quant_type = planned.quant_type;
    spec.config = planned.config;
    if (planned.target == "weight" || planned.target == "bias") {
      spec.sample = detail::attribute_at(module, planned.key()).toTensor();
    }
    const int site = quantizer_->add_site(spec);
    registered[planned.key()] = site;
    site_ids_.push_back(site);
    sites_.push_back(planned);
    set_site(graph, calls[k], site);
  }
  for (std::size_t k = 0; k < sites.size(); ++k) {
    const PlannedSite& planned = sites[k];
    if (calls[k].empty() || planned.range_of.empty()) continue;
    const auto owner = registered.find(planned.range_of);
    SHRINK_CHECK(owner != registered.end(), planned.key()
                                                << ": the site whose range it shares, "
                                                << planned.range_of << ", quantizes nothing");
    set_site(graph, calls[k], owner->second);
    SharedPoint point{planned.key(), planned.range_of, {}, ""};
    point.range_only = true;
    shared_points_.push_back(std::move(point));
  }
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
