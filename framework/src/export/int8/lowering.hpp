// The int8 lowering of a fake-quant TorchScript model: one walk over its inlined forward graph, in
// order, handing each node to the rule for its kind (rule_table.hpp), and the state the rules
// share.
//
// The walk keeps, for each float value that equals dequantize(q), its quantized twin q and q's
// parameters. A rule that lowers an op reads its inputs' twins, inserts the int8 op, gives the
// float result a twin (set_twin) and retires the nodes it replaced; everything else reads the
// dequantized values, stays float, and is reported. Not thread-safe; one Lowering per model.
#pragma once

#include <shrink/export/int8_export.hpp>

#include "export/int8/fake_quant.hpp"

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace shrink::int8 {

class RuleTable;

// quint8 parameters of a quantized activation.
struct QParams {
  double scale = 0;
  int64_t zero_point = 0;
  bool operator==(const QParams& o) const { return scale == o.scale && zero_point == o.zero_point; }
};

// Where LibTorch's int8 sigmoid and hardsigmoid put their output: [0, 1) in 256 steps.
inline constexpr QParams kFixedUnitGrid{1.0 / 256, 0};

// The quantized value `q` (quint8, parameters `p`) that a float value is the dequantization of,
// and the int8 region it belongs to (ops joined by int8 values, no float op between them).
struct Twin {
  torch::jit::Value* q = nullptr;
  QParams p;
  int region = -1;
};

class Lowering {
 public:
  // Readies `module`'s forward for lowering in place (inlined, evaluation only: `training`
  // branches go). `file` names the model in errors. Ops that describe() names in `keep_float`
  // stay float (their sites stay fake-quants). `module` and `rules` must outlive this object.
  Lowering(torch::jit::Module& module, std::string file, const RuleTable& rules,
           std::set<std::string> keep_float = {});

  // Runs the walk and the clean-up after it; once. Throws shrink::Error for a fake-quant site
  // that cannot become int8 (not 8 bits, per-channel activations).
  Int8Export run();

  // --- What rules use. Nodes are inserted at the caller's insert point (WithInsertPoint).
  torch::jit::Graph& graph() { return *graph_; }

  // The twin of float value `f`; nullptr when it has none. Valid while the Lowering lives. A rule
  // that reads a twin joins its region: what set_twin gives next is in the same one.
  const Twin* twin(const torch::jit::Value* f);
  // Float value `replaced` (and its shape queries) is now dequantize(q), inserted after q's node;
  // returns that value, whose twin is q, in the region of the twins the rule read (or a new one).
  torch::jit::Value* set_twin(torch::jit::Value* replaced, torch::jit::Value* q, QParams p);
  // `x` quantized to quint8 with `p`, as ATen's quantize_per_tensor rounds it.
  torch::jit::Value* quantize(torch::jit::Value* x, QParams p);
  // Quantized `q` as a channels-last tensor when it is 4-D (a copy only where it is not one).
  torch::jit::Value* channels_last(torch::jit::Value* q);

  // quint8 parameters for the activation fake-quant `n`: 8-bit sites only (or 7-bit ones, what
  // `reduce_range` gives). Throws shrink::Error naming the site otherwise.
  QParams activation_params(const torch::jit::Node* n, const FakeQuant& f) const;

  // `nodes` are replaced by one op whose float result is `f`: whatever outside them still reads
  // their outputs (shape queries: the shape is the same) reads `f`, and they go after the walk.
  void retire(const std::vector<torch::jit::Node*>& nodes, torch::jit::Value* f);
  // `n` goes after the walk (which skips it from now on).
  void kill(torch::jit::Node* n);
  // Uses of `v` by nodes not yet replaced.
  std::size_t live_uses(const torch::jit::Value* v) const;

  // Whether `v` is a module attribute read from `self` (a weight, a bias, a BatchNorm's
  // statistics); its dotted path ("layer1.0.conv1.weight"), and its tensor (undefined when it
  // holds something else).
  bool is_weight(const torch::jit::Value* v) const;
  const std::string& weight_path(const torch::jit::Value* v) const;
  at::Tensor attribute(const torch::jit::Value* v) const;

  // Channels of a quantized NCHW value, where a rule knows them (convolutions' outputs, and what
  // keeps their channels).
  std::optional<int64_t> channels(const torch::jit::Value* q) const;
  void set_channels(const torch::jit::Value* q, int64_t channels);

  // What the result reports.
  // What a node is called in reports: its kind and where it comes from ("aten::add (layer1.0)",
  // "aten::log_softmax (log_softmax)").
  std::string describe(const torch::jit::Node* n) const;
  // `n` now runs on an int8 kernel, in the region of the twins its rule read or made.
  void count_quantized_op(const torch::jit::Node* n);
  void note(std::string text) { result_.notes.push_back(std::move(text)); }
  // `n` stays float on purpose: reported with `reason` rather than as an op with no lowering.
  void float_on_purpose(const torch::jit::Node* n, std::string reason);

 private:
  void define_methods();
  void walk();
  int region_root(int r);
  void collect_regions();
  void destroy_retired();
  void shape_queries_read_twins();
  void report_float_ops();
  void fold_lone_quantizes();

  torch::jit::Module& module_;
  std::string file_;
  const RuleTable& rules_;
  std::shared_ptr<torch::jit::Graph> graph_;
  std::map<const torch::jit::Value*, std::string> paths_;
  std::map<const torch::jit::Node*, std::string> names_;  // as the graph came (node_names)
  std::unordered_map<const torch::jit::Value*, Twin> twins_;
  std::unordered_map<const torch::jit::Value*, int64_t> channels_;
  std::set<torch::jit::Node*> dead_;
  std::vector<torch::jit::Node*> dead_order_;
  std::map<const torch::jit::Node*, std::string> float_reasons_;
  std::set<std::string> keep_float_;
  // Regions: a union-find over ids; the rule being applied joins what it reads (rule_regions_).
  std::vector<int> region_parent_;
  std::vector<int> rule_regions_;
  std::vector<std::pair<int, std::string>> op_regions_;  // each int8 op's region, in order
  Int8Export result_;
};

}  // namespace shrink::int8
