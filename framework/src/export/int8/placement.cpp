// The int8 placement: see <shrink/export/int8_placement.hpp>. What each op needs comes from the
// lowering's rule table, so that the sites placed are the ones the rules consume.
#include <shrink/export/int8_placement.hpp>
#include <shrink/graph/model.hpp>

#include "export/int8/rule_table.hpp"
#include "graph/graph_utils.hpp"

#include <torch/csrc/jit/ir/constants.h>

#include <map>
#include <optional>
#include <set>

namespace shrink {
namespace {

using detail::is;
using int8::Needs;
using torch::jit::Node;
using torch::jit::Value;

// Which op instance (a module's call, or a functional call) each node of the evaluation graph is.
// A functional call is only named where the training graph, which op discovery reads, has the
// same calls in the same scope (a branch on `training` could shift its numbering).
std::map<const Node*, const OpInstance*> op_nodes(const Model& model, torch::jit::Graph& eval) {
  std::set<std::string> leaves;
  for (const auto& op : model.ops()) {
    if (!op.functional) leaves.insert(op.name);
  }
  std::map<const Node*, const OpInstance*> out;
  const auto train = detail::inlined_forward(model.module(), detail::ForwardGraph::kCopy);
  std::map<std::string, int> balance;  // per scope and type: training calls - evaluation calls
  auto base = [](const detail::FunctionalOp& f) {
    return detail::scope_of(f.node) + "/" + f.op.type;
  };
  for (const auto& f : detail::functional_ops(*train, leaves)) ++balance[base(f)];
  const auto calls = detail::functional_ops(eval, leaves);
  for (const auto& f : calls) --balance[base(f)];
  for (const auto& f : calls) {
    const OpInstance* op = model.find_op(f.op.name);
    if (balance[base(f)] == 0 && op != nullptr && op->functional) out[f.node] = op;
  }
  for (const Node* n : eval.nodes()) {
    const OpInstance* op = model.find_op(detail::scope_of(n));
    if (op == nullptr || op->functional) continue;
    const auto& kinds = detail::anchor_kinds(op->type);
    if (std::find(kinds.begin(), kinds.end(), n->kind().toQualString()) != kinds.end()) {
      out[n] = op;
    }
  }
  return out;
}

// A ReLU that `needs` fuses: relu for every kind; hardtanh(0, x) (ReLU6) only into a convolution
// or linear, whose kernel saturates at the top of its output range (add and mul kernels fuse
// relu alone).
bool fusable_relu(const Node* n, const Needs& needs) {
  if (is(n, "aten::relu") || is(n, "aten::relu_")) return true;
  if (needs.kind != Needs::kWeighted || (!is(n, "aten::hardtanh") && !is(n, "aten::hardtanh_"))) {
    return false;
  }
  const auto low = torch::jit::toIValue(n->input(1));  // 0 or 0.0
  return low &&
         ((low->isDouble() && low->toDouble() == 0.0) || (low->isInt() && low->toInt() == 0));
}

// An op's plan before it is taken: its sites, each with the value it makes int8 (none for a
// weight's).
struct OpPlan {
  std::vector<std::pair<PlacedSite, const Value*>> sites;
  std::string missing;  // why a site cannot be placed; "" when every one can
};

// Sites that share one range: a union-find over "op.target" keys.
class RangeGroups {
 public:
  void join(const std::string& a, const std::string& b) { parent_[root(a)] = root(b); }
  // Each site of a group after its first (in `sites`' order) uses the first's range.
  void assign(std::vector<PlacedSite>& sites) {
    std::map<std::string, std::string> owner;  // root -> first site's key
    for (PlacedSite& s : sites) {
      if (!parent_.count(s.key())) continue;
      const auto [it, first] = owner.emplace(root(s.key()), s.key());
      if (!first) s.range_of = it->second;
    }
  }

 private:
  std::string root(const std::string& k) {
    auto it = parent_.find(k);
    if (it == parent_.end()) {
      parent_[k] = k;
      return k;
    }
    if (it->second == k) return k;
    const std::string r = root(it->second);
    parent_[k] = r;
    return r;
  }
  std::map<std::string, std::string> parent_;
};

class Walk {
 public:
  Walk(const Model& model, const ConfigList& config, const ConfigEntry& preset)
      : model_(model), config_(config), preset_(preset), rules_(int8::RuleTable::standard()) {
    graph_ = detail::inlined_forward(model.module(), detail::ForwardGraph::kCopy,
                                     /*for_evaluation=*/true);
    detail::snapshot_appended_lists(*graph_);
    ops_ = op_nodes(model, *graph_);
    names_ = detail::node_names(*graph_);
    paths_ = detail::attribute_paths(*graph_);
  }

  Int8Placement run() {
    for (Node* n : graph_->nodes()) {
      if (fused_.count(n)) continue;
      const Needs* needs = rules_.needs(n->kind());
      if (n->kind() == c10::prim::ListUnpack) {  // a chunk's pieces
        same_grid(n);
      } else if (needs == nullptr) {
        float_op(n);
      } else if (needs->kind == Needs::kWeighted) {
        weighted(n, *needs);
      } else if (needs->kind == Needs::kOwnOutput) {
        own_output(n, *needs);
      } else if (needs->kind == Needs::kSameGrid) {
        same_grid(n);
      } else if (needs->kind == Needs::kFixedOutput && int8_.count(n->input(0))) {
        int8_.insert(n->outputs().begin(), n->outputs().end());  // on the kernel's grid: no site
      }
    }
    groups_.assign(out_.sites);
    return std::move(out_);
  }

 private:
  std::string describe(const Node* n) const { return detail::describe_node(n, names_); }

  // Outputs of `n` int8 on the grid of its input's, from the same site.
  void same_grid(const Node* n) {
    const auto from = origin_.find(n->input(0));
    if (!int8_.count(n->input(0))) return;
    for (const Value* out : n->outputs()) {
      int8_.insert(out);
      if (from != origin_.end()) origin_[out] = from->second;
    }
  }

  void made_int8(const Value* v, const std::string& site) {
    int8_.insert(v);
    origin_[v] = site;
  }

  // A site on (op, _output_0) makes every call's output int8: a module's calls are quantized alike.
  void mark_site_values(const PlacedSite& site) {
    if (site.target != "_output_0") return;
    for (const auto& [node, op] : ops_) {
      if (op->name == site.op_name && node->outputs().size() == 1) {
        made_int8(node->output(), site.key());
      }
    }
  }

  void take(OpPlan& plan, bool weighted) {
    for (auto& [s, value] : plan.sites) {
      if (value != nullptr) made_int8(value, s.key());
      if (placed_.insert(s.key()).second) {
        mark_site_values(s);
        out_.sites.push_back(std::move(s));
      }
    }
    (weighted ? out_.weighted_ops : out_.other_ops) += 1;
  }

  // A site that makes `v` int8 where `reader` reads it as input `input`: on the output of the op
  // that makes it, or else on that input of `reader`.
  std::optional<PlacedSite> site_on(const Value* v, const Node* reader, std::size_t input,
                                    const std::string& why) const {
    const auto made = ops_.find(v->node());
    if (made != ops_.end() && v->node()->outputs().size() == 1) {
      return PlacedSite{made->second->name, "_output_0", why};
    }
    const auto read = reader ? ops_.find(reader) : ops_.end();
    if (read != ops_.end() && (input == 0 || read->second->functional)) {
      return PlacedSite{read->second->name, "_input_" + std::to_string(input), why};
    }
    return std::nullopt;
  }

  // Input `v` of `reader` made int8 (no site when it already is).
  void need_input(OpPlan& plan, const Value* v, const Node* reader, std::size_t input,
                  const std::string& op_text) {
    if (int8_.count(v) || !plan.missing.empty()) return;
    auto site = site_on(v, reader, input, "an input of int8 " + op_text);
    if (!site) {
      plan.missing = "no site can go on its input from " + describe(v->node());
      return;
    }
    plan.sites.emplace_back(std::move(*site), v);
  }

  // The output of `n` after the ops it fuses (marked fused), made int8 with a site of its own.
  void need_output(OpPlan& plan, Node* n, const Needs& needs, const std::string& op_text,
                   std::vector<Node*>& fused) {
    const Value* end = n->output();
    std::string chain;
    if (needs.fuses_batch_norm) {
      if (Node* bn = detail::only_use(end, {"aten::batch_norm"})) {
        fused.push_back(bn);
        end = bn->output();
        chain += " + batch_norm";
      }
    }
    if (needs.fuses_relu) {
      Node* r = detail::single_data_use(end);
      if (r != nullptr && fusable_relu(r, needs)) {
        fused.push_back(r);
        end = r->output();
        chain += std::string(" + ") + r->kind().toUnqualString();
      }
    }
    if (!plan.missing.empty()) return;
    const Node* reader = detail::single_data_use(end);
    auto site = site_on(end, reader, 0, "the output of int8 " + op_text + chain);
    if (!site) {
      plan.missing = "no site can go on its output (" + describe(end->node()) + ")";
      return;
    }
    plan.sites.emplace_back(std::move(*site), end);
  }

  bool excluded(const Node* n) const {
    const auto it = ops_.find(n);
    return it != ops_.end() && preset_excludes(config_, preset_, *it->second);
  }

  // conv2d, linear: a leaf module's weight, its input, its output after what it fuses.
  void weighted(Node* n, const Needs& needs) {
    const std::string op_text = describe(n);
    const auto path = paths_.find(n->input(1));
    const OpInstance* op =
        path == paths_.end() ? nullptr : model_.find_op(detail::weight_owner_of(path->second));
    if (op == nullptr || op->functional || !op->has_weight) {
      note(op_text +
           " stays float: its weight is not a module's own (the preset places weight "
           "sites on modules)");
      return;
    }
    if (preset_excludes(config_, preset_, *op)) return note(op_text + " stays float: excluded");
    const int64_t weights = detail::attribute_at(model_.module(), path->second).toTensor().numel();
    if (weights < needs.min_weights) {
      return note(op_text + " stays float: " + std::to_string(weights) + " weights, fewer than " +
                  std::to_string(needs.min_weights) + " (faster in float than on oneDNN's int8)");
    }
    OpPlan plan;
    plan.sites.emplace_back(PlacedSite{op->name, "weight", "the weight of int8 " + op_text, ""},
                            nullptr);
    need_input(plan, n->input(0), n, 0, op_text);
    std::vector<Node*> fused;
    need_output(plan, n, needs, op_text, fused);
    if (!plan.missing.empty()) return note(op_text + " stays float: " + plan.missing);
    fused_.insert(fused.begin(), fused.end());
    take(plan, true);
  }

  // The tensors an add, mul, cat, ... computes on: tensor inputs that are not module attributes,
  // a cat's list elements. Their readers (for input sites): `n` itself, or nothing for a list.
  std::vector<std::pair<const Value*, std::size_t>> data_inputs(const Node* n) const {
    std::vector<std::pair<const Value*, std::size_t>> out;
    if (n->inputs().empty()) return out;
    if (n->input(0)->node()->kind() == c10::prim::ListConstruct) {
      for (const Value* v : n->input(0)->node()->inputs()) out.emplace_back(v, SIZE_MAX);
      return out;
    }
    for (std::size_t i = 0; i < n->inputs().size(); ++i) {
      const Value* v = n->input(i);
      if (v->type()->cast<c10::TensorType>() && !paths_.count(v)) out.emplace_back(v, i);
    }
    return out;
  }

  // add, cat, mul, ...: int8 where an input already is.
  void own_output(Node* n, const Needs& needs) {
    const auto inputs = data_inputs(n);
    if (inputs.empty() || n->outputs().size() != 1 ||
        (needs.tensor_inputs >= 0 &&
         inputs.size() != static_cast<std::size_t>(needs.tensor_inputs))) {
      return;
    }
    bool any_int8 = false;
    for (const auto& in : inputs) any_int8 = any_int8 || int8_.count(in.first);
    if (!any_int8) return;  // all float: quantizing every input would cost more than it saves
    const std::string op_text = describe(n);
    if (excluded(n)) return note(op_text + " stays float: excluded");
    OpPlan plan;
    for (const auto& [v, i] : inputs) {
      need_input(plan, v, i == SIZE_MAX ? nullptr : n, i == SIZE_MAX ? 0 : i, op_text);
    }
    std::vector<Node*> fused;
    need_output(plan, n, needs, op_text, fused);
    if (!plan.missing.empty()) return note(op_text + " stays float: " + plan.missing);
    fused_.insert(fused.begin(), fused.end());
    take(plan, false);
    if (!needs.shares_range) return;
    // One range for the inputs (those that come from a site) and the output.
    const std::string out = origin_.at(plan.sites.back().second);
    for (const auto& in : inputs) {
      const auto from = origin_.find(in.first);
      if (from != origin_.end()) groups_.join(from->second, out);
    }
  }

  // An op with no int8 rule that reads an int8 value: it runs in float between int8 ops.
  void float_op(const Node* n) {
    if (!n->kind().is_aten() || is(n, "aten::size") || is(n, "aten::dim") || is(n, "aten::len") ||
        is(n, "aten::append") || n->outputs().size() != 1 ||
        !n->output()->type()->cast<c10::TensorType>()) {
      return;
    }
    for (const Value* v : n->inputs()) {
      if (int8_.count(v)) {
        note(describe(n) +
             " has no int8 kernel here: runs in float, between a dequantize and "
             "the next site");
        return;
      }
    }
  }

  void note(std::string text) { out_.notes.push_back(std::move(text)); }

  const Model& model_;
  const ConfigList& config_;
  const ConfigEntry& preset_;
  const int8::RuleTable& rules_;
  std::shared_ptr<torch::jit::Graph> graph_;
  std::map<const Node*, const OpInstance*> ops_;
  std::map<const Node*, std::string> names_;
  std::map<const Value*, std::string> paths_;
  std::set<const Value*> int8_;                 // values the int8 model will hold quantized
  std::map<const Value*, std::string> origin_;  // the site whose range an int8 value has
  RangeGroups groups_;
  std::set<const Node*> fused_;
  std::set<std::string> placed_;  // site keys
  Int8Placement out_;
};

}  // namespace

Int8Placement place_int8_sites(const Model& model, const ConfigList& config,
                               const ConfigEntry& preset) {
  return Walk(model, config, preset).run();
}

}  // namespace shrink
