// Helpers over inlined TorchScript graphs, shared by op discovery and graph rewriting.
#pragma once

#include <shrink/graph/model.hpp>

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>

#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace shrink::detail {

// The interned symbol of a qualified node kind ("aten::conv2d").
c10::Symbol sym(const char* qualified);

// Whether `n` is a node of the qualified kind `kind`.
bool is(const torch::jit::Node* n, const char* kind);

// Module instance path of a node from its inlined call stack ("layer1.0.conv1"); "" for the root.
std::string scope_of(const torch::jit::Node* node);

// The module whose weight attribute path `path` is ("layer1.0.conv1.weight" -> "layer1.0.conv1");
// "" for any other path.
std::string weight_owner_of(const std::string& path);

// What reports call the top-level nodes of `graph` with one tensor output: the module path a node
// runs in ("layer1.0.conv1", "layer1.0") or whose weight it reads, or else (a call made in the root
// module's forward, or in a saved inlined graph, which keeps no module paths) its
// name there as op discovery gives it ("relu_1", "log_softmax": the kind without "aten::" and a
// trailing "_", numbered in graph order). Taken before a rewrite, so that names stay put.
std::map<const torch::jit::Node*, std::string> node_names(torch::jit::Graph& graph);

// What reports call node `n`: its kind and where it comes from, its name in `names` (node_names)
// or else its module path ("aten::add (layer1.0)", "aten::log_softmax (log_softmax)").
std::string describe_node(const torch::jit::Node* n,
                          const std::map<const torch::jit::Node*, std::string>& names);

// Functional calls that are op instances: top-level nodes of known functional kinds made outside
// leaf modules, named "<scope>.<type>[_k]".
struct FunctionalOp {
  OpInstance op;
  torch::jit::Node* node;
};
std::vector<FunctionalOp> functional_ops(torch::jit::Graph& graph,
                                         const std::set<std::string>& leaves);

// The ATen kinds that implement a module type's forward ("Conv2d" -> aten::conv2d, ...); empty
// when the type is unknown.
const std::vector<std::string>& anchor_kinds(const std::string& module_type);

// The graph executor's optimisation on for a scope (as it is by default, in Python too), then as
// it was: training turns it off (run/passes/prepare_data.cpp).
class GraphOptimizeOn {
 public:
  GraphOptimizeOn();
  ~GraphOptimizeOn();
  GraphOptimizeOn(const GraphOptimizeOn&) = delete;
  GraphOptimizeOn& operator=(const GraphOptimizeOn&) = delete;

 private:
  bool before_;
};

// torch::jit::Inline, fully: the inliner splices in each callee's *optimized* graph, which is
// itself inlined only while the graph executor's optimisation is on (the pipeline turns it off for
// training), so this turns it on for the call.
void inline_calls(torch::jit::Graph& graph);

// Which graph inlined_forward rewrites: the forward method's own (a rewrite that is to run) or a
// copy (a graph that is only read, for op discovery say).
enum class ForwardGraph { kOwn, kCopy };

// `module`'s forward graph with inline_calls and fold_flag_attributes applied: the graph op
// discovery and the graph rewrites walk. kOwn edits the method's graph in place and returns it.
std::shared_ptr<torch::jit::Graph> inlined_forward(const torch::jit::Module& module,
                                                   ForwardGraph which, bool for_evaluation = false);

// Replaces reads of plain module attributes (bool, int, float, string: configuration such as
// mobilenet_v2's `use_res_connect`; never `training`) with their values and resolves the branches
// they choose, so that the ops of such a branch lie in the top-level block, where op discovery and
// site insertion look. The attributes are taken as constants of the model, as freezing does.
// `for_evaluation` also folds `training` to false (export: training branches go).
void fold_flag_attributes(std::shared_ptr<torch::jit::Graph>& graph,
                          const torch::jit::Module& module, bool for_evaluation = false);

// A list made by prim::ListConstruct and grown by aten::append in the top-level block, read by
// aten::cat after each append (densenet's `features.append(new); torch.cat(features, 1)`): each
// cat gets a list of its own with the elements as they stand there, and the appends go, so that a
// cat's inputs are the values it reads and nothing else keeps them alive. Lists read or grown
// anywhere else are left as they are.
void snapshot_appended_lists(torch::jit::Graph& graph);

// Every node, sub-blocks included, in order.
std::vector<torch::jit::Node*> all_nodes(torch::jit::Block* block);

// The attribute at a dotted path below `root` ("layer1.0.conv1.weight", or a submodule's path
// "layer1.0.conv1"): module.attr() takes one name, so the path is followed a component at a time.
c10::IValue attribute_at(const torch::jit::Module& root, const std::string& path);

// Attribute path of every prim::GetAttr output reachable from the graph's `self` input
// ("conv1.weight", "layer1.0.conv1").
std::map<const torch::jit::Value*, std::string> attribute_paths(torch::jit::Graph& graph);

// The one use of `v` that reads its data (shape queries, aten::dim and aten::size, aside), when
// it takes `v` as its input 0; nullptr otherwise.
torch::jit::Node* single_data_use(const torch::jit::Value* v);

// single_data_use(v) when it is a node of one of `kinds`; nullptr otherwise.
torch::jit::Node* only_use(const torch::jit::Value* v, std::initializer_list<const char*> kinds);

// A convolution's BatchNorm: aten::conv2d -> [one node of `site_kind`, a quantization site] ->
// aten::batch_norm, each the single data use (single_data_use) of the one before.
struct ConvBatchNorm {
  torch::jit::Node* site = nullptr;        // the node between them, when there is one
  torch::jit::Node* batch_norm = nullptr;  // nullptr: `conv` is not followed by a BatchNorm so
};
ConvBatchNorm batch_norm_after(torch::jit::Node* conv, const char* site_kind = nullptr);

// BatchNorm (inference: running statistics) folded into the convolution before it, in place:
// k = gamma / sqrt(var + eps), weight *= k (per output channel), bias = (bias - mean) * k + beta.
// Returns k (a per-channel scale of the weight also scales by |k|). All float32.
at::Tensor fold_batchnorm_into(at::Tensor& weight, at::Tensor& bias, const at::Tensor& gamma,
                               const at::Tensor& beta, const at::Tensor& mean,
                               const at::Tensor& var, double eps);

}  // namespace shrink::detail
