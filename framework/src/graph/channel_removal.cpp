// Channel removal. See channel_removal.hpp.
//
// One walk over the inlined forward graph gives every activation a layout: for each channel
// (dim 1) a channel class and whether it is exactly zero there. Convolutions and linears create
// classes; position-wise ops (BatchNorm, ReLUs, pooling, depthwise convolutions) keep them; a
// residual add joins the classes of its two inputs; a concatenation chains them. A class is
// removable when nothing reads it as non-zero: convolutions and linears read their input channels
// (a zero one contributes nothing), and the model's output and ops this walk does not know read
// everything. Then each module is sliced: producers lose output channels, readers input
// channels, BatchNorms and depthwise convolutions both.
#include <shrink/core/error.hpp>
#include <shrink/graph/channel_removal.hpp>

#include "graph/graph_utils.hpp"

#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <functional>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_map>

namespace shrink {
namespace {

using detail::is;
using torch::jit::Node;
using torch::jit::Value;

struct Layout {
  std::vector<int> classes;  // per channel
  std::vector<char> zero;    // the channel is exactly zero here
  int rank = 4;              // 4: NCHW; 2: [N, features]
  bool flat = false;         // flattened NCHW: each channel spans H*W features
};

// What one module's channels depend on.
struct ModuleUse {
  std::string type;
  Node* node = nullptr;
  std::vector<int> out_classes;   // producers and position-wise ops: their output channels
  std::vector<char> zero_filter;  // convolutions and linears: which filters are zero (pruned)
  bool position_wise = false;     // BatchNorm, depthwise convolution: out channels = in channels
  std::optional<Layout> input;    // convolution or linear reading a tracked input
  int64_t in_features = 0;
  bool shared = false;  // called more than once: left as it is
};

class Analysis {
 public:
  // The analysis works on a clone of `module` (same parameter tensors) that replaces it: a
  // method that has run keeps the plan it compiled, so a rewrite must go into new methods.
  explicit Analysis(torch::jit::Module& module) : module_(module) {
    module_ = module_.clone(/*inplace=*/true);
    graph_ = detail::inlined_forward(module_, detail::ForwardGraph::kOwn);
    paths_ = detail::attribute_paths(*graph_);
  }

  std::vector<std::vector<std::string>> groups() {
    for (Node* n : graph_->nodes()) visit(n);
    std::map<int, std::vector<std::string>> by_root;
    std::vector<int> order;
    for (const Node* n : graph_->nodes()) {
      for (const auto& kv : uses_) {
        const ModuleUse& u = kv.second;
        // A depthwise convolution's channels are its input's: it joins the group of what it
        // reads, so that one mask prunes a channel from both (BatchNorms follow their producer).
        const bool depthwise = u.position_wise && u.type == "Conv2d";
        if (u.node != n || (u.position_wise && !depthwise) || u.out_classes.empty()) continue;
        const int root = find(u.out_classes.front());
        // Joined only when every channel is joined with the same position of the others.
        bool aligned = true;
        for (const auto& other : by_root[root]) {
          const ModuleUse& o = uses_.at(other);
          aligned = aligned && o.out_classes.size() == u.out_classes.size();
          for (std::size_t i = 0; aligned && i < u.out_classes.size(); ++i) {
            aligned = find(o.out_classes[i]) == find(u.out_classes[i]);
          }
        }
        if (!aligned) continue;
        if (by_root[root].empty()) order.push_back(root);
        by_root[root].push_back(kv.first);
      }
    }
    std::vector<std::vector<std::string>> out;
    for (int r : order) {
      if (by_root[r].size() > 1) out.push_back(by_root[r]);
    }
    return out;
  }

  ChannelRemoval run() {
    for (const auto& p : module_.parameters()) result_.parameters_before += p.numel();
    for (Node* n : graph_->nodes()) visit(n);
    for (Value* out : graph_->outputs()) pin(out, kOutput);
    decide();
    apply();
    for (const auto& p : module_.parameters()) result_.parameters_after += p.numel();
    return result_;
  }

 private:
  // ---- classes ----
  int new_class(bool pruned) {
    parent_.push_back(static_cast<int>(parent_.size()));
    needed_.push_back(0);
    read_.push_back(0);
    pruned_.push_back(pruned ? 1 : 0);
    pinned_by_.emplace_back();
    return parent_.back();
  }
  int find(int c) { return parent_[c] == c ? c : parent_[c] = find(parent_[c]); }
  void join(int a, int b) {
    a = find(a), b = find(b);
    if (a == b) return;
    parent_[b] = a;
    needed_[a] |= needed_[b];
    read_[a] |= read_[b];
    pruned_[a] |= pruned_[b];
    if (pinned_by_[a].empty()) pinned_by_[a] = pinned_by_[b];
  }

  // ---- parameters ----
  std::string path(const Value* v) const {
    auto it = paths_.find(v);
    return it == paths_.end() ? std::string() : it->second;
  }
  static std::string owner(const std::string& param) { return param.substr(0, param.rfind('.')); }
  torch::jit::Module submodule(const std::string& name) const {
    return detail::attribute_at(module_, name).toModule();
  }
  at::Tensor tensor_attr(const Value* v) const {
    const std::string p = path(v);
    if (p.empty()) return {};
    const c10::IValue value = detail::attribute_at(module_, p);
    return value.isTensor() ? value.toTensor().detach() : at::Tensor();
  }
  static bool none(const Value* v) { return v->type()->kind() == c10::TypeKind::NoneType; }

  // ---- walk ----
  // `v` is read in full by an op this walk cannot follow (or is the model's output).
  void pin(Value* v, const std::string& reason) {
    auto it = layouts_.find(v);
    if (it == layouts_.end()) return;
    for (int c : it->second.classes) {
      const int r = find(c);
      needed_[r] = 1;
      if (pinned_by_[r].empty()) pinned_by_[r] = reason;
    }
  }
  static constexpr const char* kOutput = "the model's output";
  void read(const Layout& in) {  // a convolution or linear reads these channels
    for (std::size_t i = 0; i < in.classes.size(); ++i) {
      if (!in.zero[i]) needed_[find(in.classes[i])] = read_[find(in.classes[i])] = 1;
    }
  }
  std::string describe(const Node* n) const {
    const std::string where = detail::scope_of(n);
    return std::string(n->kind().toQualString()) + (where.empty() ? "" : " (" + where + ")");
  }

  static std::vector<char> zero_filters(const at::Tensor& w) {
    const at::Tensor zero = w.reshape({w.size(0), -1}).eq(0).all(1).to(at::kChar).contiguous();
    return std::vector<char>(zero.data_ptr<int8_t>(), zero.data_ptr<int8_t>() + zero.numel());
  }
  // The output channels of a producer whose filters are `zero_filter` (zero_filters(w)).
  Layout produced(const std::vector<char>& zero_filter, const at::Tensor& b, int rank) {
    Layout out;
    out.rank = rank;
    const auto n = static_cast<int64_t>(zero_filter.size());
    const at::Tensor bias_zero = b.defined() ? b.eq(0) : at::ones({n}, at::kBool);
    for (int64_t i = 0; i < n; ++i) {
      const bool pruned = zero_filter[static_cast<std::size_t>(i)] != 0;
      out.classes.push_back(new_class(pruned));
      out.zero.push_back(pruned && bias_zero[i].item<bool>() ? 1 : 0);
    }
    return out;
  }

  void visit(Node* n) {
    // Nodes with blocks: whatever tracked value they read is read in full.
    if (!n->blocks().empty()) {
      for (Value* in : n->inputs()) pin(in, describe(n));
      for (auto* b : n->blocks()) {
        for (Node* inner : detail::all_nodes(b)) {
          if (shape_query(inner)) continue;
          for (Value* in : inner->inputs()) pin(in, describe(inner));
        }
      }
      return;
    }
    if (is(n, "aten::conv2d")) return conv(n);
    if (is(n, "aten::linear")) return linear(n);
    if (is(n, "aten::batch_norm")) return batch_norm(n);
    if (is(n, "aten::add") || is(n, "aten::add_")) return add(n);
    if (is(n, "aten::cat")) return cat(n);
    if (is(n, "aten::flatten") || is(n, "aten::view") || is(n, "aten::reshape")) return flatten(n);
    if (is(n, "aten::slice")) {  // of any dimension but the channels'
      auto in = layouts_.find(n->input(0));
      auto dim = torch::jit::constant_as<int64_t>(n->input(1));
      if (in != layouts_.end() && dim) {
        const int64_t d = *dim < 0 ? *dim + in->second.rank : *dim;
        if (d != 1) {
          layouts_[n->output()] = in->second;
          return;
        }
      }
    }
    if (keeps_zero(n)) {
      auto in = layouts_.find(n->input(0));
      if (in != layouts_.end() && n->outputs().size() == 1) {
        layouts_[n->output()] = in->second;
        for (std::size_t i = 1; i < n->inputs().size(); ++i) pin(n->input(i), describe(n));
        return;
      }
    }
    if (shape_query(n)) return;          // reads no data
    if (is(n, "prim::ListConstruct")) {  // followed where it is used (cat)
      for (Node* user : [&] {
             std::vector<Node*> users;
             for (const auto& u : n->output()->uses()) users.push_back(u.user);
             return users;
           }()) {
        if (!is(user, "aten::cat")) {
          for (Value* in : n->inputs()) pin(in, describe(user));
        }
      }
      return;
    }
    for (Value* in : n->inputs()) pin(in, describe(n));
  }

  static bool shape_query(const Node* n) {
    return is(n, "aten::size") || is(n, "aten::dim") || is(n, "aten::numel") || is(n, "aten::len");
  }

  bool keeps_zero(const Node* n) const {
    static const std::set<std::string> kinds = {"aten::relu",
                                                "aten::relu_",
                                                "aten::relu6",
                                                "aten::max_pool2d",
                                                "aten::avg_pool2d",
                                                "aten::adaptive_avg_pool2d",
                                                "aten::adaptive_max_pool2d",
                                                "aten::dropout",
                                                "aten::dropout_",
                                                "aten::feature_dropout",
                                                "aten::hardswish",
                                                "aten::hardswish_",
                                                "aten::silu",
                                                "aten::silu_",
                                                "aten::gelu",
                                                "aten::tanh",
                                                "aten::leaky_relu",
                                                "aten::leaky_relu_",
                                                "aten::contiguous",
                                                "aten::clone",
                                                "aten::detach"};
    const std::string kind = n->kind().toQualString();
    if (kinds.count(kind)) return true;
    if (kind == "aten::hardtanh" || kind == "aten::hardtanh_" || kind == "aten::clamp" ||
        kind == "aten::clamp_") {
      auto lo = torch::jit::constant_as<double>(n->input(1)),
           hi = torch::jit::constant_as<double>(n->input(2));
      return (!lo || *lo <= 0) && (!hi || *hi >= 0) && (lo || none(n->input(1))) &&
             (hi || none(n->input(2)));
    }
    if (kind == "aten::mul" || kind == "aten::div") {  // by a scalar
      return n->input(1)->type()->kind() != c10::TypeKind::TensorType;
    }
    return false;
  }

  // A module called a second time (weights shared between two places) keeps its shape: what it
  // reads and writes is kept, and the second call's output is not followed.
  bool called_again(const std::string& name, Node* n) {
    auto it = uses_.find(name);
    if (it == uses_.end()) return false;
    ModuleUse& first = it->second;
    first.shared = true;
    for (int c : first.out_classes) needed_[find(c)] = 1;
    if (first.input) {
      for (int c : first.input->classes) needed_[find(c)] = 1;
    }
    pin(n->input(0), describe(n) + ": a module called twice");
    return true;
  }

  void conv(Node* n) {
    const std::string w_path = path(n->input(1));
    auto groups = torch::jit::constant_as<int64_t>(n->input(6));
    if (w_path.empty() || !groups) {
      for (Value* in : n->inputs())
        pin(in, describe(n) + ": weight or groups not a module attribute");
      return;
    }
    const at::Tensor w = tensor_attr(n->input(1));
    const at::Tensor b = none(n->input(2)) ? at::Tensor() : tensor_attr(n->input(2));
    const std::string name = owner(w_path);
    if (called_again(name, n)) return;
    auto in = layouts_.find(n->input(0));
    ModuleUse& use = uses_[name];
    use.type = "Conv2d";
    use.node = n;
    use.zero_filter = zero_filters(w);
    if (*groups == 1) {
      if (in != layouts_.end()) {
        read(in->second);
        use.input = in->second;
        use.in_features = w.size(1);
      }
      Layout out = produced(use.zero_filter, b, 4);
      use.out_classes = out.classes;
      layouts_[n->output()] = out;
      return;
    }
    const bool depthwise = w.size(1) == 1 && w.size(0) == *groups;
    if (!depthwise || in == layouts_.end() ||
        static_cast<int64_t>(in->second.classes.size()) != *groups) {
      pin(n->input(0), describe(n) + ": a grouped convolution");
      Layout out = produced(use.zero_filter, b, 4);
      for (int c : out.classes)
        needed_[c] = 1, pinned_by_[c] = describe(n) + ": a grouped convolution";
      layouts_[n->output()] = out;
      return;
    }
    // Depthwise: channel i in, channel i out.
    Layout out = in->second;
    for (std::size_t i = 0; i < out.classes.size(); ++i) {
      const bool bias_zero = !b.defined() || b[static_cast<int64_t>(i)].item<double>() == 0;
      out.zero[i] = (out.zero[i] || use.zero_filter[i] != 0) && bias_zero;
    }
    use.position_wise = true;
    use.out_classes = out.classes;
    layouts_[n->output()] = out;
  }

  void linear(Node* n) {
    const std::string w_path = path(n->input(1));
    if (w_path.empty()) {
      for (Value* in : n->inputs()) pin(in, describe(n) + ": weight not a module attribute");
      return;
    }
    const at::Tensor w = tensor_attr(n->input(1));
    const at::Tensor b = none(n->input(2)) ? at::Tensor() : tensor_attr(n->input(2));
    const std::string name = owner(w_path);
    if (called_again(name, n)) return;
    ModuleUse& use = uses_[name];
    use.type = "Linear";
    use.node = n;
    auto in = layouts_.find(n->input(0));
    if (in != layouts_.end()) {
      const Layout& l = in->second;
      const auto channels = static_cast<int64_t>(l.classes.size());
      if (l.rank == 2 && (l.flat ? w.size(1) % channels == 0 : w.size(1) == channels)) {
        read(l);
        use.input = l;
        use.in_features = w.size(1);
      } else {
        pin(n->input(0), describe(n) + ": its input's features are not its channels");
      }
    }
    use.zero_filter = zero_filters(w);
    Layout out = produced(use.zero_filter, b, 2);
    use.out_classes = out.classes;
    layouts_[n->output()] = out;
  }

  void batch_norm(Node* n) {
    auto in = layouts_.find(n->input(0));
    const std::string w_path = path(n->input(1));
    const std::string mean_path = path(n->input(3));
    if (in == layouts_.end()) return;
    if (mean_path.empty())
      return pin(n->input(0), describe(n) + ": running statistics not module attributes");
    const std::string name = owner(mean_path);
    if (called_again(name, n)) return;
    const auto channels = static_cast<int64_t>(in->second.classes.size());
    const at::Tensor gamma = w_path.empty() ? at::ones({channels}) : tensor_attr(n->input(1));
    const at::Tensor beta = none(n->input(2)) ? at::zeros({channels}) : tensor_attr(n->input(2));
    const at::Tensor mean = tensor_attr(n->input(3)), var = tensor_attr(n->input(4));
    const double eps = torch::jit::constant_as<double>(n->input(7)).value_or(1e-5);
    // A zero input stays zero when beta - gamma * mean / sqrt(var + eps) is zero.
    const at::Tensor shift = beta - gamma * mean / at::sqrt(var + eps);
    Layout out = in->second;
    for (int64_t i = 0; i < channels; ++i) {
      const bool off = gamma[i].item<double>() == 0 && beta[i].item<double>() == 0;
      out.zero[static_cast<std::size_t>(i)] =
          off || (out.zero[static_cast<std::size_t>(i)] && shift[i].item<double>() == 0);
    }
    ModuleUse& use = uses_[name];
    use.type = "BatchNorm2d";
    use.node = n;
    use.position_wise = true;
    use.out_classes = out.classes;
    layouts_[n->output()] = out;
  }

  void add(Node* n) {
    auto a = layouts_.find(n->input(0));
    auto b = layouts_.find(n->input(1));
    if (a == layouts_.end() && b == layouts_.end()) return;
    if (a == layouts_.end() || b == layouts_.end() ||
        a->second.classes.size() != b->second.classes.size() || a->second.rank != b->second.rank ||
        a->second.flat != b->second.flat) {
      if (n->input(1)->type()->kind() != c10::TypeKind::TensorType && a != layouts_.end()) {
        Layout out = a->second;  // plus a scalar: no longer zero
        std::fill(out.zero.begin(), out.zero.end(), 0);
        layouts_[n->output()] = out;
        return;
      }
      pin(n->input(0), describe(n));
      pin(n->input(1), describe(n));
      return;
    }
    Layout out = a->second;
    for (std::size_t i = 0; i < out.classes.size(); ++i) {
      join(out.classes[i], b->second.classes[i]);
      out.zero[i] = a->second.zero[i] && b->second.zero[i];
    }
    layouts_[n->output()] = out;
  }

  void cat(Node* n) {
    Node* list = n->input(0)->node();
    auto dim = torch::jit::constant_as<int64_t>(n->input(1));
    Layout out;
    bool ok = list->kind() == c10::prim::ListConstruct && dim && *dim == 1;
    for (Value* v : ok ? list->inputs() : at::ArrayRef<Value*>()) {
      auto l = layouts_.find(v);
      if (l == layouts_.end() || l->second.rank != 4) {
        ok = false;
        break;
      }
      out.classes.insert(out.classes.end(), l->second.classes.begin(), l->second.classes.end());
      out.zero.insert(out.zero.end(), l->second.zero.begin(), l->second.zero.end());
    }
    if (!ok) {
      if (list->kind() == c10::prim::ListConstruct) {
        for (Value* v : list->inputs()) pin(v, describe(n));
      }
      return;
    }
    layouts_[n->output()] = out;
  }

  void flatten(Node* n) {
    auto in = layouts_.find(n->input(0));
    if (in == layouts_.end()) return;
    bool rows = false;
    if (is(n, "aten::flatten")) {
      rows = torch::jit::constant_as<int64_t>(n->input(1)) == int64_t{1} &&
             torch::jit::constant_as<int64_t>(n->input(2)) == int64_t{-1};
    } else {
      auto shape = torch::jit::toIValue(n->input(1));
      const Node* list = n->input(1)->node();
      rows = shape ? shape->isIntList() && shape->toIntList().size() == 2
                   : list->kind() == c10::prim::ListConstruct && list->inputs().size() == 2;
      if (rows) reshapes_.push_back(n);  // its size written in the code may change
    }
    if (!rows || in->second.rank != 4) return pin(n->input(0), describe(n));
    Layout out = in->second;
    out.rank = 2;
    out.flat = true;
    layouts_[n->output()] = out;
  }

  // ---- decide and apply ----
  bool removed(int c) { return !needed_[find(c)]; }

  void decide() {
    // A pruned channel that nothing reads as data but an op this walk cannot follow: it cannot
    // go, and keeping it would leave the pruning half done. Say which op.
    for (std::size_t c = 0; c < parent_.size(); ++c) {
      const int r = find(static_cast<int>(c));
      if (pruned_[r] && !read_[r] && !pinned_by_[r].empty() && pinned_by_[r] != kOutput) {
        std::string producer;
        for (const auto& u : uses_) {
          for (int k : u.second.out_classes) {
            if (find(k) == r && !u.second.position_wise) producer = u.first;
          }
        }
        throw Error("channel removal cannot follow " + pinned_by_[r] +
                    ": it reads pruned channels of " +
                    (producer.empty() ? std::string("a pruned layer") : producer));
      }
    }
    // Every producer keeps at least one channel.
    for (auto& kv : uses_) {
      const ModuleUse& u = kv.second;
      if (u.position_wise || u.out_classes.empty()) continue;
      bool any = false;
      for (int c : u.out_classes) any = any || !removed(c);
      if (!any) {
        needed_[find(u.out_classes.front())] = 1;
        kept_one_.insert(find(u.out_classes.front()));
      }
    }
  }

  static std::vector<int64_t> kept(const std::vector<int>& classes,
                                   const std::function<bool(int)>& gone) {
    std::vector<int64_t> k;
    for (std::size_t i = 0; i < classes.size(); ++i) {
      if (!gone(classes[i])) k.push_back(static_cast<int64_t>(i));
    }
    return k;
  }

  void set_tensor(torch::jit::Module& m, const std::string& name, const at::Tensor& value) {
    if (!m.hasattr(name) || !m.attr(name).isTensor()) return;
    const at::Tensor old = m.attr(name).toTensor();
    at::Tensor t = value.detach().clone().contiguous();
    if (old.requires_grad()) t.set_requires_grad(true);
    m.setattr(name, t);
  }
  // Sizes kept as attributes follow; those the class declares constant (torch.nn's
  // __constants__: in_channels, num_features, ...) cannot change and keep their old values (the
  // forward reads the tensors' shapes, not them).
  static void set_int(torch::jit::Module& m, const std::string& name, int64_t v) {
    if (m.type()->hasAttribute(name) && m.attr(name).isInt()) m.setattr(name, v);
  }

  void apply() {
    torch::NoGradGuard no_grad;
    auto gone = [this](int c) { return removed(c); };
    for (auto& kv : uses_) {
      const std::string& name = kv.first;
      const ModuleUse& u = kv.second;
      if (u.shared) continue;
      torch::jit::Module m = submodule(name);
      ResizedModule r;
      r.name = name;
      r.type = u.type;
      const std::vector<int64_t> out = kept(u.out_classes, gone);
      r.out_before = static_cast<int64_t>(u.out_classes.size());
      r.out_after = static_cast<int64_t>(out.size());
      r.kept_out = out;
      const at::Tensor out_index = torch::tensor(out, at::kLong);
      if (u.type == "BatchNorm2d") {
        for (const char* p : {"weight", "bias", "running_mean", "running_var"}) {
          if (m.hasattr(p) && m.attr(p).isTensor())
            set_tensor(m, p, m.attr(p).toTensor().index_select(0, out_index));
        }
        set_int(m, "num_features", r.out_after);
      } else {
        at::Tensor w = m.attr("weight").toTensor().index_select(0, out_index);
        if (u.input) {
          const Layout& l = *u.input;
          const std::vector<int64_t> in = kept(l.classes, gone);
          const int64_t span = l.flat ? u.in_features / static_cast<int64_t>(l.classes.size()) : 1;
          std::vector<int64_t> columns;
          for (int64_t c : in) {
            for (int64_t s = 0; s < span; ++s) columns.push_back(c * span + s);
          }
          r.in_before = u.in_features;
          r.in_after = static_cast<int64_t>(columns.size());
          r.kept_in = columns;
          w = w.index_select(1, torch::tensor(columns, at::kLong));
        }
        set_tensor(m, "weight", w);
        if (m.hasattr("bias") && m.attr("bias").isTensor())
          set_tensor(m, "bias", m.attr("bias").toTensor().index_select(0, out_index));
        if (u.type == "Linear") {
          set_int(m, "out_features", r.out_after);
          if (u.input) set_int(m, "in_features", r.in_after);
        } else {
          set_int(m, "out_channels", r.out_after);
          if (u.input) set_int(m, "in_channels", r.in_after);
          if (u.position_wise) {  // depthwise: groups follow the channels
            set_int(m, "in_channels", r.out_after);
            set_int(m, "groups", r.out_after);
            torch::jit::WithInsertPoint guard(u.node);
            u.node->replaceInput(6, graph_->insertConstant(r.out_after));
          }
        }
      }
      if (r.out_after != r.out_before || r.in_after != r.in_before) {
        if (!u.position_wise) result_.channels_removed += r.out_before - r.out_after;
        result_.modules.push_back(std::move(r));
      }
    }
    for (const auto& kv : uses_) note_kept_pruned(kv.first, kv.second);
    // Flatten sizes written into the graph (x.view(-1, 800)): the new width.
    for (Node* n : reshapes_) {
      auto l = layouts_.find(n->output());
      if (l == layouts_.end()) continue;
      const int64_t before = static_cast<int64_t>(l->second.classes.size());
      const int64_t after = static_cast<int64_t>(kept(l->second.classes, gone).size());
      if (before == after) continue;
      auto rewrite = [&](int64_t k) { return k > 0 && k % before == 0 ? k / before * after : k; };
      torch::jit::WithInsertPoint guard(n);
      if (auto shape = torch::jit::toIValue(n->input(1))) {
        std::vector<int64_t> s = shape->toIntVector();
        s[1] = rewrite(s[1]);
        n->replaceInput(1, graph_->insertConstant(s));
      } else {
        Node* list = n->input(1)->node();
        if (auto k = torch::jit::constant_as<int64_t>(list->input(1))) {
          torch::jit::WithInsertPoint at_list(list);
          list->replaceInput(1, graph_->insertConstant(rewrite(*k)));
        }
      }
    }
    torch::jit::EliminateDeadCode(graph_);
  }

  // Pruned filters of `name` whose channels stay, and why: an op that reads them in full, or
  // what shares the channels and keeps them (a residual add's other producers, say).
  void note_kept_pruned(const std::string& name, const ModuleUse& u) {
    KeptPruned k{name, 0, ""};
    if (u.zero_filter.size() != u.out_classes.size()) return;
    for (std::size_t i = 0; i < u.zero_filter.size(); ++i) {
      if (!u.zero_filter[i] || removed(u.out_classes[i])) continue;
      if (k.channels++ == 0) k.why = why_kept(name, find(u.out_classes[i]));
    }
    if (k.channels > 0 && !u.shared) result_.kept_pruned.push_back(std::move(k));
  }
  std::string why_kept(const std::string& name, int root) {
    if (kept_one_.count(root)) return "every filter was pruned, and a layer keeps one";
    if (!pinned_by_[root].empty()) return "read in full by " + pinned_by_[root];
    std::string others;
    for (const auto& kv : uses_) {
      const ModuleUse& o = kv.second;
      if (o.zero_filter.size() != o.out_classes.size()) continue;
      for (std::size_t i = 0; kv.first != name && i < o.zero_filter.size(); ++i) {
        if (find(o.out_classes[i]) == root && !o.zero_filter[i]) {
          others += (others.empty() ? "" : ", ") + kv.first;
          break;
        }
      }
    }
    return others.empty() ? "read as non-zero further on"
                          : "its channels are also those of " + others + ", which keep them";
  }

  torch::jit::Module& module_;
  std::shared_ptr<torch::jit::Graph> graph_;
  std::map<const Value*, std::string> paths_;
  std::unordered_map<const Value*, Layout> layouts_;
  std::map<std::string, ModuleUse> uses_;
  std::vector<Node*> reshapes_;
  std::vector<int> parent_;
  std::vector<char> needed_, read_, pruned_;
  std::vector<std::string> pinned_by_;
  std::set<int> kept_one_;  // classes kept so that a layer keeps one channel
  ChannelRemoval result_;
};

}  // namespace

ChannelRemoval remove_pruned_channels(torch::jit::Module& module) {
  Analysis analysis(module);
  return analysis.run();
}

std::vector<std::vector<std::string>> channel_dependency_groups(const torch::jit::Module& module) {
  torch::jit::Module copy = module;  // the analysis replaces this handle with a clone
  Analysis analysis(copy);
  return analysis.groups();
}

}  // namespace shrink
