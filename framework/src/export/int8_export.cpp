// Lowers a fake-quant TorchScript model to LibTorch's int8 kernels. See int8_export.hpp.
//
// One walk over the inlined graph, in order, keeps for each float value that equals
// dequantize(q) its quantized twin q and q's parameters. Each fake-quant of an activation becomes
// quantize_per_tensor (quint8) + dequantize; a convolution or linear whose input has a twin and
// whose weight is fake-quantized becomes quantized::conv2d / linear (with the ReLU after it fused
// and the BatchNorm after it folded), with its output quantized as the fake-quant after it says;
// pooling, reshapes and ReLUs run on the twin; residual adds and concatenations become quantized
// ones. Everything else reads the dequantized value, stays float, and is reported. LibTorch's own
// passes then finish the model: freezing (weights become constants, training branches go) and
// FoldQuantizedPrepackingOps (the prepacked weights become attributes).
#include <shrink/core/error.hpp>
#include <shrink/export/int8_export.hpp>
#include <shrink/core/logging.hpp>

#include "graph/graph_utils.hpp"

#include <ATen/Context.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/frontend/sugared_value.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/passes/quantization/finalize.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

namespace shrink {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

c10::Symbol sym(const char* qualified) { return c10::Symbol::fromQualString(qualified); }
bool is(const Node* n, const char* kind) { return n->kind() == sym(kind); }

// quint8 parameters of a quantized activation.
struct QParams {
  double scale = 0;
  int64_t zero_point = 0;
  bool operator==(const QParams& o) const { return scale == o.scale && zero_point == o.zero_point; }
};

struct Twin {
  Value* q;
  QParams p;
};

// A fake-quant node's parameters, as constants of the graph.
struct FakeQuant {
  bool per_channel = false;
  double scale = 0;
  int64_t zero_point = 0;
  at::Tensor scales, zero_points;  // per channel
  int64_t axis = 0;
  int64_t qmin = 0, qmax = 0;
};

std::optional<FakeQuant> fake_quant_of(const Node* n) {
  using torch::jit::constant_as;
  FakeQuant f;
  if (is(n, "aten::fake_quantize_per_tensor_affine") && n->inputs().size() == 5) {
    auto scale = constant_as<double>(n->input(1));
    auto zp = constant_as<int64_t>(n->input(2));
    auto lo = constant_as<int64_t>(n->input(3)), hi = constant_as<int64_t>(n->input(4));
    if (!scale || !zp || !lo || !hi) return std::nullopt;
    f.scale = *scale;
    f.zero_point = *zp;
    f.qmin = *lo;
    f.qmax = *hi;
    return f;
  }
  if (is(n, "aten::fake_quantize_per_channel_affine") && n->inputs().size() == 6) {
    auto scales = constant_as<at::Tensor>(n->input(1));
    auto zps = constant_as<at::Tensor>(n->input(2));
    auto axis = constant_as<int64_t>(n->input(3));
    auto lo = constant_as<int64_t>(n->input(4)), hi = constant_as<int64_t>(n->input(5));
    if (!scales || !zps || !axis || !lo || !hi) return std::nullopt;
    f.per_channel = true;
    f.scales = *scales;
    f.zero_points = *zps;
    f.axis = *axis;
    f.qmin = *lo;
    f.qmax = *hi;
    return f;
  }
  return std::nullopt;
}

// What a node is called in reports: its kind and where it comes from.
std::string describe(const Node* n) {
  std::string where = detail::scope_of(n);
  if (where.empty() && n->outputs().size() == 1) where = "%" + n->output()->debugName();
  return std::string(n->kind().toQualString()) + (where.empty() ? "" : " (" + where + ")");
}

// The single data use of `v` when it is a node of one of `kinds` taking v as input 0.
Node* only_use(const Value* v, std::initializer_list<const char*> kinds) {
  Node* user = detail::single_data_use(v);
  if (user == nullptr) return nullptr;
  for (const char* k : kinds) {
    if (is(user, k)) return user;
  }
  return nullptr;
}

class Lowering {
 public:
  static constexpr int64_t kSmallLinearWeights = 16384;

  Lowering(torch::jit::Module& module, const std::string& file) : module_(module), file_(file) {
    graph_ = module_.get_method("forward").graph();
    detail::inline_calls(*graph_);
    // Evaluation only: `training` reads become false and their branches go (with those of the
    // model's other flags).
    detail::fold_flag_attributes(graph_, module_, /*for_evaluation=*/true);
    paths_ = detail::attribute_paths(*graph_);
  }

  // quantize_per_tensor to quint8, with a fast path for large tensors: ATen's kernel here is a
  // scalar loop (156 us for the quick-start net's 64-image input, 40 us this way); small tensors
  // keep the one op (the five of the fast path cost more there). Inlined into forward.
  static constexpr const char* kQuantizeMethod = "shrink_quantize_activation";
  void define_quantize_method() {
    module_.define(R"(
def shrink_quantize_activation(self, x: Tensor, scale: float, inv_scale: float, zero_point: int):
    if x.numel() > 16384:
        q = torch.clamp(torch.round(x * inv_scale) + zero_point, 0, 255).to(dtype=0)  # uint8
        return torch._make_per_tensor_quantized_tensor(q, scale, zero_point)
    return torch.quantize_per_tensor(x, scale, zero_point, 13)  # quint8
)");
  }

  Int8Export run() {
    define_quantize_method();
    std::vector<Node*> order(graph_->nodes().begin(), graph_->nodes().end());
    for (Node* n : order) {
      if (dead_.count(n)) continue;
      if (auto fq = fake_quant_of(n)) {
        if (!is_weight(n->input(0))) activation_fake_quant(n, *fq);
      } else if (is(n, "aten::conv2d") || is(n, "aten::linear")) {
        weighted(n);
      } else if (value_op(n)) {
        // moved onto the twin
      } else if (is(n, "aten::add") || is(n, "aten::add_")) {
        add(n);
      } else if (is(n, "aten::cat")) {
        cat(n);
      } else if (is(n, "aten::hardswish") || is(n, "aten::hardswish_")) {
        hardswish(n);
      }
    }
    for (auto it = dead_order_.rbegin(); it != dead_order_.rend(); ++it) {
      for (Value* out : (*it)->outputs()) {
        SHRINK_CHECK(!out->hasUses(), file_ << ": int8 export: internal error, "
                                            << describe(*it) << " is still used");
      }
      (*it)->destroy();
    }
    // Shape queries, sub-blocks included (BatchNorm's input check), read the quantized tensor: a
    // dequantize kept alive only for them cost as much as a convolution.
    for (Node* n : detail::all_nodes(graph_->block())) {
      if ((is(n, "aten::dim") || is(n, "aten::size")) && is(n->input(0)->node(), "aten::dequantize")) {
        n->replaceInput(0, n->input(0)->node()->input(0));
      }
    }
    torch::jit::EliminateDeadCode(graph_);
    report_float_ops();
    // A quantize whose only reader is a dequantize (the output site of an op that stays float,
    // the last classifier say) is one fake-quant: one kernel instead of two and a branch.
    for (Node* dq : detail::all_nodes(graph_->block())) {
      Node* call = dq->inputs().empty() ? nullptr : dq->input(0)->node();
      if (!is(dq, "aten::dequantize") || call->kind() != c10::prim::CallMethod ||
          call->s(c10::attr::name) != kQuantizeMethod || call->output()->uses().size() != 1) {
        continue;
      }
      torch::jit::WithInsertPoint guard(dq);
      Value* fq = graph_->insert(sym("aten::fake_quantize_per_tensor_affine"),
                                 {call->input(1), call->input(2), call->input(4), int64_t{0}, int64_t{255}});
      dq->output()->replaceAllUsesWith(fq);
    }
    torch::jit::EliminateDeadCode(graph_);
    detail::inline_calls(*graph_);  // the quantize method
    // A model with fake-quant sites left (weights of ops that stayed float, say) keeps them.
    return result_;
  }

 private:
  bool is_weight(const Value* v) const { return paths_.count(v) != 0; }

  at::Tensor attribute(const Value* v) const {
    const c10::IValue value = detail::attribute_at(module_, paths_.at(v));
    return value.isTensor() ? value.toTensor() : at::Tensor();
  }

  // quint8 parameters for an activation fake-quant: 8-bit sites only (or 7-bit ones, what
  // `reduce_range` gives: the kernels then saturate at quint8's limits rather than the site's).
  QParams activation_params(const Node* n, const FakeQuant& f) {
    SHRINK_CHECK(!f.per_channel, file_ << ": int8 export: " << describe(n)
                                       << " quantizes an activation per channel; int8 kernels "
                                          "take per-tensor activations");
    const int64_t levels = f.qmax - f.qmin;
    SHRINK_CHECK(levels == 254 || levels == 255 || levels == 126 || levels == 127,
                 file_ << ": int8 export: " << describe(n) << " is a " << std::llround(std::log2(levels + 1))
                       << "-bit site (integer range [" << f.qmin << ", " << f.qmax
                       << "]); LibTorch's int8 kernels need 8-bit sites");
    // [-127, 127] and [-128, 127] (and reduced [-63, 63]) shift into quint8's [0, 255]; [0, 255]
    // (and [0, 127]) is quint8 already.
    const int64_t shift = f.qmin < 0 ? 128 : 0;
    return {f.scale, f.zero_point + shift};
  }

  Value* dequantize_after(Value* q) {
    Node* dq = graph_->create(sym("aten::dequantize"), {q});
    dq->insertAfter(q->node());
    return dq->output();
  }

  // Float value `replaced` (and its shape queries) is now dequantize(q); returns that value.
  Value* set_twin(Value* replaced, Value* q, QParams p) {
    Value* f = dequantize_after(q);
    replaced->replaceAllUsesWith(f);
    twins_[f] = {q, p};
    return f;
  }

  // Uses of `v` by nodes not yet replaced.
  std::size_t live_uses(const Value* v) const {
    std::size_t count = 0;
    for (const auto& u : v->uses()) count += dead_.count(u.user) == 0 ? 1 : 0;
    return count;
  }

  void kill(Node* n) {
    if (dead_.insert(n).second) dead_order_.push_back(n);
  }

  // `nodes` are replaced by one op whose float result is `f`: whatever outside them still reads
  // their outputs (shape queries: the shape is the same) reads `f`, and they go.
  void retire(const std::vector<Node*>& nodes, Value* f) {
    const std::set<Node*> group(nodes.begin(), nodes.end());
    for (Node* n : nodes) {
      for (Value* out : n->outputs()) {
        const auto uses = out->uses();
        for (const auto& u : uses) {
          if (!group.count(u.user)) u.user->replaceInput(u.offset, f);
        }
      }
    }
    for (Node* n : nodes) kill(n);
  }

  void activation_fake_quant(Node* n, const FakeQuant& f) {
    const QParams p = activation_params(n, f);
    Value* x = n->input(0);
    auto it = twins_.find(x);
    if (it != twins_.end() && it->second.p == p) {
      n->output()->replaceAllUsesWith(x);  // already quantized so
    } else {
      torch::jit::WithInsertPoint guard(n);
      // inv_scale as ATen's quantize kernel computes it (1 / scale in float), so that the fast
      // path rounds exactly as quantize_per_tensor does.
      const double inv_scale = static_cast<double>(1.0f / static_cast<float>(p.scale));
      Node* call = graph_->insertNode(graph_->create(
          c10::prim::CallMethod,
          {graph_->inputs().at(0), x, graph_->insertConstant(p.scale),
           graph_->insertConstant(inv_scale), graph_->insertConstant(p.zero_point)}));
      call->s_(c10::attr::name, kQuantizeMethod);
      call->output()->setType(c10::TensorType::get());
      set_twin(n->output(), call->output(), p);
    }
    kill(n);
  }

  // conv2d / linear, with what follows it folded in: [fake-quant] [batch_norm] [fake-quant]
  // [relu | hardtanh(0, 6)] [fake-quant]. The output takes the parameters of the last fake-quant.
  void weighted(Node* n) {
    const bool conv = is(n, "aten::conv2d");
    auto in = twins_.find(n->input(0));
    Node* weight_fq = n->input(1)->node();
    auto wf = fake_quant_of(weight_fq);
    if (in == twins_.end() || !wf || !is_weight(weight_fq->input(0))) return;  // stays float
    const at::Tensor weight = attribute(weight_fq->input(0));
    if (!weight.defined()) return;
    // Name it by its module ("conv1") in what is reported.
    std::string module = paths_.at(weight_fq->input(0));
    module = module.substr(0, module.rfind('.'));
    const std::string name = std::string(n->kind().toQualString()) + " (" + module + ")";
    if (!conv) {
      // oneDNN's int8 linear costs some 20 us a call whatever its size (a 500 -> 10 classifier:
      // 28 us, against 6.5 us in fp32, at batch 1 and at 64 alike): a small one runs in float, on
      // the weights as the fake-quant model quantized them, so that it computes the same.
      const at::Tensor& w = weight;
      if (w.numel() < kSmallLinearWeights) {
        torch::jit::WithInsertPoint guard(n);
        n->replaceInput(1, graph_->insertConstant(fake_quantized(w.detach().to(at::kFloat), *wf)));
        float_reasons_[n] = name + ": runs in float, faster than oneDNN's int8 linear at " +
                            std::to_string(w.numel()) + " weights (fewer than " +
                            std::to_string(kSmallLinearWeights) + "), on its fake-quantized weights";
        return;
      }
    }
    std::vector<Node*> chain;
    Node* last_fq = nullptr;
    Node* bn = nullptr;
    Node* relu = nullptr;
    Value* v = n->output();
    auto take_fq = [&] {
      if (Node* f = only_use(v, {"aten::fake_quantize_per_tensor_affine"})) {
        chain.push_back(f);
        last_fq = f;
        v = f->output();
      }
    };
    take_fq();
    if (conv) {
      if (Node* b = only_use(v, {"aten::batch_norm"})) {
        bn = b;
        chain.push_back(b);
        v = b->output();
        last_fq = nullptr;  // a fake-quant before the BatchNorm measured the wrong values
        take_fq();
      }
    }
    Node* before_relu_fq = last_fq;
    const std::size_t before_relu = chain.size();
    if (Node* r = only_use(v, {"aten::relu", "aten::relu_", "aten::hardtanh", "aten::hardtanh_"})) {
      chain.push_back(r);
      v = r->output();
      last_fq = nullptr;
      take_fq();
      if (last_fq != nullptr && relu_like(r, *fake_quant_of(last_fq))) {
        relu = r;
      } else {  // the ReLU stays a separate op on the quantized output
        chain.resize(before_relu);
        last_fq = before_relu_fq;
      }
    }
    if (last_fq == nullptr) {
      result_.notes.push_back(name + " stays float: its output is not fake-quantized");
      return;
    }
    const QParams out = activation_params(last_fq, *fake_quant_of(last_fq));

    // The weight as the fake-quant model used it, with the BatchNorm folded in.
    at::Tensor w = weight.detach().to(at::kFloat);
    Value* x = in->second.q;
    if (!conv) {
      if (auto reordered = flatten_channels_last(n->input(0), w.size(1), *wf)) {
        x = reordered->first;
        const int64_t c = reordered->second;
        w = w.reshape({w.size(0), c, -1}).transpose(1, 2).reshape({w.size(0), -1}).contiguous();
        result_.notes.push_back(name + ": flattens its channels-last input without a copy (" +
                                std::to_string(c) + " channels innermost; weight columns reordered to match)");
      }
    }
    at::Tensor w_fq = fake_quantized(w, *wf);
    const int64_t channels = w.size(0);
    at::Tensor scales = wf->per_channel ? wf->scales.to(at::kDouble).reshape({-1})
                                        : at::full({channels}, wf->scale, at::kDouble);
    at::Tensor zps = wf->per_channel ? wf->zero_points.to(at::kLong).reshape({-1})
                                     : at::full({channels}, wf->zero_point, at::kLong);
    // The bias: None (a constant, or an Optional attribute holding None), an attribute, a constant.
    at::Tensor b;
    if (n->input(2)->type()->kind() == c10::TypeKind::NoneType) {
      b = at::zeros({channels});
    } else if (is_weight(n->input(2))) {
      b = attribute(n->input(2));
      b = b.defined() ? b.detach().to(at::kFloat) : at::zeros({channels});
    } else if (auto bias_value = torch::jit::constant_as<at::Tensor>(n->input(2))) {
      b = bias_value->to(at::kFloat);
    }
    if (!b.defined()) {
      result_.notes.push_back(name + " stays float: its bias is computed, not a parameter");
      return;
    }
    if (bn != nullptr) {
      at::Tensor gamma = bn_input(bn, 1, channels, 1.0), beta = bn_input(bn, 2, channels, 0.0);
      at::Tensor mean = bn_input(bn, 3, channels, 0.0), var = bn_input(bn, 4, channels, 1.0);
      auto eps = torch::jit::constant_as<double>(bn->input(7));
      if (!gamma.defined() || !beta.defined() || !mean.defined() || !var.defined() || !eps) {
        result_.notes.push_back(name + " stays float: its BatchNorm has computed parameters");
        return;
      }
      const at::Tensor k = detail::fold_batchnorm_into(w_fq, b, gamma, beta, mean, var, *eps);
      scales = scales * k.abs().to(at::kDouble);
    }
    // oneDNN takes symmetric int8 weights (zero point 0): an affine channel is re-quantized.
    const at::Tensor affine = zps != 0;
    if (affine.any().item<bool>()) {
      const at::Tensor absmax = w_fq.abs().reshape({channels, -1}).amax(1).to(at::kDouble);
      scales = at::where(affine, at::clamp_min(absmax / 127.0, 1e-12), scales);
      result_.notes.push_back(name + ": affine weights re-quantized symmetric per channel "
                                            "(oneDNN takes zero point 0)");
    }
    scales = at::clamp_min(scales, 1e-12);

    torch::jit::WithInsertPoint guard(n);
    Value* w_q = graph_->insert(sym("aten::quantize_per_channel"),
                                {graph_->insertConstant(w_fq), graph_->insertConstant(scales),
                                 graph_->insertConstant(at::zeros({channels}, at::kLong)), int64_t{0},
                                 static_cast<int64_t>(at::kQInt8)});
    Value* bias = graph_->insertConstant(b.contiguous());
    Value* packed;
    Value* q;
    if (conv) {
      packed = graph_->insert(sym("quantized::conv2d_prepack"),
                              {w_q, bias, n->input(3), n->input(4), n->input(5), n->input(6)});
      q = graph_->insert(sym(relu ? "quantized::conv2d_relu" : "quantized::conv2d"),
                         {x, packed, out.scale, out.zero_point});
    } else {
      packed = graph_->insert(sym("quantized::linear_prepack"), {w_q, bias});
      q = graph_->insert(sym(relu ? "quantized::linear_relu" : "quantized::linear"),
                         {x, packed, out.scale, out.zero_point});
    }
    if (conv) channels_[q] = channels;
    Value* f = set_twin(last_fq->output(), q, out);
    chain.insert(chain.begin(), n);
    retire(chain, f);
    ++result_.quantized_ops;
  }

  // A linear's input `f` that flattens a quantized NCHW activation with C channels to rows of
  // K: oneDNN's activations are channels-last, so flattening them in (c, h, w) order copies.
  // reshape(x, [-1, C, K / C]).transpose(1, 2).reshape([-1, K]) flattens in (h, w, c) order
  // instead, a view of a channels-last x, and the linear's weight columns are reordered the same
  // way: exact whatever x's layout (it reorders any K-wide rows alike), copy-free on
  // channels-last. Returns that flattened value and C, or nothing when the pattern is not there.
  std::optional<std::pair<Value*, int64_t>> flatten_channels_last(Value* f, int64_t k,
                                                                  const FakeQuant& weight_fq) {
    auto t = twins_.find(f);
    if ((weight_fq.per_channel && weight_fq.axis != 0) || t == twins_.end() || live_uses(f) != 1 ||
        live_uses(t->second.q) != 1) {
      return std::nullopt;  // a per-input-channel weight, or the flattened value read elsewhere
    }
    Node* flat = t->second.q->node();
    bool rows = false;  // the flattened value is 2-D
    if (is(flat, "aten::reshape")) {
      const Node* list = flat->input(1)->node();
      auto shape = torch::jit::toIValue(flat->input(1));
      rows = shape ? shape->isIntList() && shape->toIntList().size() == 2
                   : list->kind() == c10::prim::ListConstruct && list->inputs().size() == 2;
    } else if (is(flat, "aten::flatten")) {
      rows = torch::jit::constant_as<int64_t>(flat->input(1)) == int64_t{1} &&
             torch::jit::constant_as<int64_t>(flat->input(2)) == int64_t{-1};
    }
    auto c = channels_.find(flat->input(0));
    if (!rows || c == channels_.end() || c->second < 1 || k % c->second != 0 || k / c->second < 2) {
      return std::nullopt;
    }
    const int64_t channels = c->second;
    torch::jit::WithInsertPoint guard(flat);
    Value* grouped = graph_->insert(
        sym("aten::reshape"),
        {flat->input(0), graph_->insertConstant(std::vector<int64_t>{-1, channels, k / channels})});
    Value* inner = graph_->insert(sym("aten::transpose"), {grouped, int64_t{1}, int64_t{2}});
    Value* rows_value =
        graph_->insert(sym("aten::reshape"), {inner, graph_->insertConstant(std::vector<int64_t>{-1, k})});
    return std::make_pair(rows_value, channels);
  }

  static at::Tensor fake_quantized(const at::Tensor& w, const FakeQuant& f) {
    return f.per_channel ? at::fake_quantize_per_channel_affine(w, f.scales.to(at::kFloat),
                                                                f.zero_points.to(at::kInt), f.axis,
                                                                f.qmin, f.qmax)
                         : at::fake_quantize_per_tensor_affine(w, f.scale, f.zero_point, f.qmin, f.qmax);
  }

  // A BatchNorm parameter, as a constant or a module attribute; `fallback` where it is None.
  at::Tensor bn_input(Node* bn, std::size_t i, int64_t channels, double fallback) {
    Value* v = bn->input(i);
    if (v->type()->kind() == c10::TypeKind::NoneType) return at::full({channels}, fallback);
    if (is_weight(v)) {
      const at::Tensor a = attribute(v);
      return a.defined() ? a.detach().to(at::kFloat) : at::full({channels}, fallback);
    }
    auto c = torch::jit::constant_as<at::Tensor>(v);
    return c ? c->to(at::kFloat) : at::Tensor();
  }

  // relu, or hardtanh(0, 6) where the quantized range after it ends at or below 6 (so that
  // saturating at the top of the range is the clamp at 6).
  static bool relu_like(const Node* r, const FakeQuant& after) {
    if (is(r, "aten::relu") || is(r, "aten::relu_")) return true;
    auto lo = torch::jit::constant_as<double>(r->input(1));
    auto hi = torch::jit::constant_as<double>(r->input(2));
    if (!lo || !hi || *lo != 0.0) return false;
    const double top = (static_cast<double>(after.qmax) - static_cast<double>(after.zero_point)) * after.scale;
    return top <= *hi * (1 + 1e-6);
  }

  // Ops that run on quantized tensors and keep their parameters: moved onto the twin.
  bool value_op(Node* n) {
    static const std::set<std::string> kinds = {
        "aten::max_pool2d", "aten::adaptive_avg_pool2d", "aten::avg_pool2d", "aten::relu",
        "aten::relu_",      "aten::hardtanh",            "aten::hardtanh_",  "aten::reshape",
        "aten::view",       "aten::flatten",             "aten::dropout",    "aten::contiguous",
        "aten::transpose",  "aten::permute",             "aten::squeeze",    "aten::unsqueeze"};
    if (!kinds.count(n->kind().toQualString()) || n->outputs().size() != 1) return false;
    auto in = twins_.find(n->input(0));
    if (in == twins_.end()) return false;
    Value* q;
    std::string kind = n->kind().toQualString();
    if (kind == "aten::dropout") {
      q = in->second.q;  // evaluation: identity
    } else if (kind == "aten::view" || kind.back() == '_') {
      // In-place variants become out-of-place ones; view becomes reshape (int8 activations from
      // oneDNN are channels-last, which view cannot flatten; reshape copies where it must).
      if (kind == "aten::view") kind = "aten::reshape";
      if (kind.back() == '_') kind.pop_back();
      std::vector<torch::jit::NamedValue> args;
      args.emplace_back(in->second.q);
      for (std::size_t i = 1; i < n->inputs().size(); ++i) args.emplace_back(n->input(i));
      torch::jit::WithInsertPoint guard(n);
      q = graph_->insert(sym(kind.c_str()), args);
    } else {  // the same call (keyword-only arguments included) on the quantized tensor
      Node* copy = graph_->createClone(n, [](Value* v) { return v; });
      copy->replaceInput(0, in->second.q);
      copy->insertBefore(n);
      q = copy->output();
    }
    static const std::set<std::string> keep_channels = {
        "aten::max_pool2d", "aten::adaptive_avg_pool2d", "aten::avg_pool2d", "aten::relu",
        "aten::hardtanh",   "aten::dropout",             "aten::contiguous"};
    auto c = channels_.find(in->second.q);
    if (c != channels_.end() && keep_channels.count(kind)) channels_[q] = c->second;
    set_twin(n->output(), q, in->second.p);
    kill(n);
    return true;
  }

  // add(a, b) [relu] fake-quant  ->  quantized::add[_relu](qa, qb, scale, zero_point)
  void add(Node* n) {
    if (n->inputs().size() != 3) return;
    auto a = twins_.find(n->input(0)), b = twins_.find(n->input(1));
    auto alpha = torch::jit::constant_as<int64_t>(n->input(2));
    if (a == twins_.end() || b == twins_.end() || !alpha || *alpha != 1) return;
    fuse_output(n, {a->second.q, b->second.q}, "quantized::add", "quantized::add_relu");
  }

  // cat([a, b, ...], dim) fake-quant  ->  quantized::cat([qa, qb, ...], dim, scale, zero_point)
  void cat(Node* n) {
    Node* list = n->input(0)->node();
    if (list->kind() != c10::prim::ListConstruct || n->input(0)->uses().size() != 1) return;
    std::vector<Value*> qs;
    for (Value* v : list->inputs()) {
      auto it = twins_.find(v);
      if (it == twins_.end()) return;
      qs.push_back(it->second.q);
    }
    if (only_use(n->output(), {"aten::fake_quantize_per_tensor_affine"}) == nullptr) return;
    torch::jit::WithInsertPoint guard(n);
    Value* qlist = graph_->insertNode(graph_->createList(qs[0]->type(), qs))->output();
    fuse_output(n, {qlist, n->input(1)}, "quantized::cat");
  }

  // hardswish(a) fake-quant  ->  quantized::hardswish(qa, scale, zero_point)
  void hardswish(Node* n) {
    auto a = twins_.find(n->input(0));
    if (a != twins_.end()) fuse_output(n, {a->second.q}, "quantized::hardswish");
  }

  // n followed by [relu, when `op_relu` is given] and a fake-quant: one quantized op `op(inputs...,
  // scale, zero_point)` with the fake-quant's parameters. False (nothing changed) when no
  // fake-quant follows.
  bool fuse_output(Node* n, std::vector<Value*> inputs, const char* op,
                   const char* op_relu = nullptr) {
    Node* relu = op_relu ? only_use(n->output(), {"aten::relu", "aten::relu_"}) : nullptr;
    Node* f = relu ? only_use(relu->output(), {"aten::fake_quantize_per_tensor_affine"}) : nullptr;
    if (f == nullptr) {  // no relu, or one not followed by a fake-quant: the op alone
      relu = nullptr;
      f = only_use(n->output(), {"aten::fake_quantize_per_tensor_affine"});
    }
    if (f == nullptr) return false;
    const QParams p = activation_params(f, *fake_quant_of(f));
    torch::jit::WithInsertPoint guard(n);
    std::vector<torch::jit::NamedValue> args(inputs.begin(), inputs.end());
    args.emplace_back(p.scale);
    args.emplace_back(p.zero_point);
    Value* q = graph_->insert(sym(relu ? op_relu : op), args);
    std::vector<Node*> replaced = {n, f};
    if (relu) replaced.insert(replaced.begin() + 1, relu);
    retire(replaced, set_twin(f->output(), q, p));
    ++result_.quantized_ops;
    return true;
  }

  // Every op left reading a dequantized value runs in float: say which.
  void report_float_ops() {
    for (Node* n : graph_->nodes()) {
      if (!n->kind().is_aten() || is(n, "aten::dequantize") || is(n, "aten::quantize_per_tensor") ||
          is(n, "aten::quantize_per_channel") || is(n, "aten::numel") || is(n, "aten::dim") ||
          is(n, "aten::size")) {  // shape queries read no data
        continue;
      }
      auto reason = float_reasons_.find(n);
      if (reason != float_reasons_.end()) {
        result_.float_ops.push_back(reason->second);
        continue;
      }
      for (Value* in : n->inputs()) {
        if (in->node()->kind() == sym("aten::dequantize")) {
          result_.float_ops.push_back(describe(n) + ": no int8 lowering for it; runs in float");
          break;
        }
      }
    }
  }

  torch::jit::Module& module_;
  std::string file_;
  std::shared_ptr<Graph> graph_;
  std::map<const Value*, std::string> paths_;
  std::unordered_map<Value*, Twin> twins_;
  std::unordered_map<const Value*, int64_t> channels_;  // of quantized NCHW tensors, where known
  std::set<Node*> dead_;
  std::vector<Node*> dead_order_;
  std::map<const Node*, std::string> float_reasons_;  // float on purpose, and why
  Int8Export result_;
};

// A tensor constant of the frozen graph, as float32; undefined when `v` is not one.
at::Tensor float_constant(const Value* v) {
  auto t = torch::jit::constant_as<at::Tensor>(v);
  return t ? t->to(at::kFloat) : at::Tensor();
}

// conv2d -> batch_norm pairs of a frozen graph (every parameter a constant): the BatchNorm goes,
// the convolution takes the folded weight and bias. Returns how many were folded.
int fold_frozen_batchnorms(Graph& graph) {
  int folded = 0;
  for (Node* conv : detail::all_nodes(graph.block())) {
    if (!is(conv, "aten::conv2d")) continue;
    Node* bn = only_use(conv->output(), {"aten::batch_norm"});
    if (bn == nullptr || torch::jit::constant_as<bool>(bn->input(5)) != false) continue;
    at::Tensor w = float_constant(conv->input(1));
    if (!w.defined()) continue;
    const int64_t channels = w.size(0);
    auto param = [&](std::size_t i, double fallback) {
      return bn->input(i)->type()->kind() == c10::TypeKind::NoneType ? at::full({channels}, fallback)
                                                                      : float_constant(bn->input(i));
    };
    at::Tensor b = conv->input(2)->type()->kind() == c10::TypeKind::NoneType
                       ? at::zeros({channels})
                       : float_constant(conv->input(2));
    const at::Tensor gamma = param(1, 1.0), beta = param(2, 0.0), mean = param(3, 0.0), var = param(4, 1.0);
    const auto eps = torch::jit::constant_as<double>(bn->input(7));
    if (!b.defined() || !gamma.defined() || !beta.defined() || !mean.defined() || !var.defined() || !eps) {
      continue;
    }
    detail::fold_batchnorm_into(w, b, gamma, beta, mean, var, *eps);
    torch::jit::WithInsertPoint guard(conv);
    conv->replaceInput(1, graph.insertConstant(w.contiguous()));
    conv->replaceInput(2, graph.insertConstant(b.contiguous()));
    bn->output()->replaceAllUsesWith(conv->output());
    bn->destroy();
    ++folded;
  }
  torch::jit::EliminateDeadCode(graph.block());
  return folded;
}

// Kernels made when the model loads. LibTorch's packed int8 weights are TorchBind objects that the
// file stores as their int8 weight and bias; a submodule that holds one can derive further packed
// weights from it in __setstate__ (what torch.jit.load calls with what __getstate__ saved), so the
// file holds each weight once. Two uses, both for LibTorch 1.13's oneDNN kernels on this machine:
//
// - Small batches on a linear. Its int8 linear builds its oneDNN primitive on every call, a fixed
//   cost of 15-45 us that dominates at batch 1 (the quick-start net's fc1: 35 us); its int8
//   convolution caches the primitive of the first input shape it sees. Inputs of at most
//   kSmallRows rows run as a 1x1 convolution on the same int8 weight (fc1 at batch 1: 20 us; the
//   same products and sums, so the same outputs); larger ones on the linear (from 16 rows up it is
//   the faster one: 49 vs 89 us).
// - Narrow convolutions before a max pool. Quantized max_pool2d on channels-last tensors is
//   vectorised over kPoolLanes channels and scalar for the rest: the quick-start net's first pool
//   (20 channels) took 1.1 ms of its 2.2 ms at batch 64; with 32 it takes 0.11 ms. A convolution
//   with fewer than kPoolLanes output channels whose output goes only through max pools into
//   another convolution gets zero filters up to kPoolLanes (zero weight, zero bias), and that
//   convolution zero weights for them: the extra channels hold the zero point and add nothing.
constexpr int64_t kSmallRows = 4;
constexpr int64_t kPoolLanes = 32;  // ATen's Vec<quint8> on AVX2

// `quantized.<op>` in TorchScript source compiled here: LibTorch's quantized:: operators.
struct QuantizedOpsResolver : torch::jit::Resolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(const std::string& name, torch::jit::GraphFunction& f,
                                                         const torch::jit::SourceRange& loc) override {
    if (name == "quantized") return std::make_shared<torch::jit::BuiltinModule>("quantized");
    return torch::jit::nativeResolver()->resolveValue(name, f, loc);
  }
  c10::TypePtr resolveType(const std::string&, const torch::jit::SourceRange&) override { return nullptr; }
};

const char* const kLinearParams = "__torch__.torch.classes.quantized.LinearPackedParamsBase";
const char* const kConvParams = "__torch__.torch.classes.quantized.Conv2dPackedParamsBase";

// Methods of the submodule that keeps a linear's packed weight (`packed`) and runs small batches
// as a 1x1 convolution (`small`, made by __setstate__).
std::string small_batch_linear_source() {
  const std::string state = std::string("Tuple[") + kLinearParams + ", bool]";
  std::string src = "def __getstate__(self) -> " + state + R"(:
    return (self.packed, self.training)

def __setstate__(self, state: )" + state + R"() -> None:
    self.packed = state[0]
    self.training = state[1]
    w, b = quantized.linear_unpack(self.packed)
    self.small = quantized.conv2d_prepack(w.reshape([w.size(0), w.size(1), 1, 1]), b, [1, 1], [0, 0], [1, 1], 1)
)";
  for (const std::string op : {"linear", "linear_relu"}) {
    const std::string conv = op == "linear" ? "conv2d" : "conv2d_relu";
    src += "\ndef " + op + "(self, x: Tensor, scale: float, zero_point: int) -> Tensor:\n"
           "    if x.dim() == 2 and x.size(0) > 0 and x.size(0) <= " + std::to_string(kSmallRows) + ":\n"
           "        y = quantized." + conv + "(x.reshape([x.size(0), 1, 1, x.size(1)]).permute([0, 3, 1, 2]), "
           "self.small, scale, zero_point)\n"
           "        return y.reshape([x.size(0), y.size(1)])\n"
           "    return quantized." + op + "(x, self.packed, scale, zero_point)\n";
  }
  return src;
}

// Methods of the submodule that keeps a convolution's packed weight (`packed`, per-channel) and
// runs it with `pad_out` zero filters and `pad_in` zero input channels added (`padded`).
std::string padded_conv_source() {
  const std::string state = std::string("Tuple[") + kConvParams + ", int, int, bool]";
  std::string src = "def __getstate__(self) -> " + state + R"(:
    return (self.packed, self.pad_out, self.pad_in, self.training)

def __setstate__(self, state: )" + state + R"() -> None:
    self.packed = state[0]
    self.pad_out = state[1]
    self.pad_in = state[2]
    self.training = state[3]
    w, b = quantized.conv2d_unpack(self.packed)
    scales = torch.constant_pad_nd(w.q_per_channel_scales(), [0, self.pad_out], 1.0)
    zero_points = torch.constant_pad_nd(w.q_per_channel_zero_points(), [0, self.pad_out], 0)
    weight = torch.constant_pad_nd(w.dequantize(), [0, 0, 0, 0, 0, self.pad_in, 0, self.pad_out], 0.0)
    bias = b
    if b is not None:
        bias = torch.constant_pad_nd(b, [0, self.pad_out], 0.0)
    self.padded = quantized.conv2d_prepack(torch.quantize_per_channel(weight, scales, zero_points, 0, 12), bias,
                                           self.packed.stride(), self.packed.padding(), self.packed.dilation(),
                                           self.packed.groups())
)";
  for (const std::string op : {"conv2d", "conv2d_relu"}) {
    src += "\ndef " + op + "(self, x: Tensor, scale: float, zero_point: int) -> Tensor:\n"
           "    return quantized." + op + "(x, self.padded, scale, zero_point)\n";
  }
  return src;
}

class LoadTimeKernels {
 public:
  explicit LoadTimeKernels(torch::jit::Module& module)
      : module_(module), graph_(module.get_method("forward").graph()), self_(graph_->inputs().at(0)) {
    for (Node* n : detail::all_nodes(graph_->block())) {
      if (n->kind() == c10::prim::GetAttr) ++reads_[n->s(c10::attr::name)];
    }
  }

  // Returns how many linears now run small batches as a convolution.
  int route_small_batch_linears() {
    const c10::ClassTypePtr conv_params = torch::getCustomClass(kConvParams);
    if (!conv_params) return 0;
    int routed = 0;
    for (Node* n : detail::all_nodes(graph_->block())) {
      if ((!is(n, "quantized::linear") && !is(n, "quantized::linear_relu")) || !packed_weight(n)) continue;
      const c10::IValue packed = packed_weight(n).value();
      torch::jit::Module sub = submodule("Int8Linear", packed, [&](torch::jit::Module& first) {
        first.register_attribute("small", conv_params, c10::IValue());
        first.define(small_batch_linear_source(), std::make_shared<QuantizedOpsResolver>());
      });
      sub.run_method("__setstate__", c10::ivalue::Tuple::create({packed, false}));
      call_instead(n, sub, "int8_linear_" + std::to_string(routed++));
    }
    return routed;
  }

  // Returns how many convolutions now run with zero channels added.
  int pad_channels_before_pools() {
    std::map<Node*, std::pair<int64_t, int64_t>> pads;  // convolution -> (pad_out, pad_in)
    for (Node* n : detail::all_nodes(graph_->block())) {
      if (!is_conv(n) || !packed_weight(n)) continue;
      const at::Tensor w = packed_op(n, "quantized::conv2d_unpack").toTensor();
      // Grouped convolutions would read other input channels with more filters.
      if (w.size(0) >= kPoolLanes || w.qscheme() != at::kPerChannelAffine ||
          packed_op(n, "quantized::conv2d_groups").toInt() != 1) {
        continue;
      }
      // The output goes through one or more max pools (shape queries aside) into one convolution.
      Value* v = n->output();
      Node* next = nullptr;
      bool pooled = false;
      while (Node* user = single_reader(v)) {
        if (is(user, "aten::max_pool2d") && user->input(0) == v) {
          pooled = true;
          v = user->output();
          continue;
        }
        if (is_conv(user) && user->input(0) == v && packed_weight(user)) {
          const at::Tensor next_w = packed_op(user, "quantized::conv2d_unpack").toTensor();
          if (next_w.size(1) == w.size(0) && next_w.qscheme() == at::kPerChannelAffine) next = user;
        }
        break;
      }
      if (!pooled || next == nullptr) continue;
      pads[n].first = kPoolLanes - w.size(0);
      pads[next].second = kPoolLanes - w.size(0);
    }
    int padded = 0;
    for (Node* n : detail::all_nodes(graph_->block())) {
      const auto found = pads.find(n);
      if (found == pads.end()) continue;
      const std::pair<int64_t, int64_t> pad = found->second;
      const c10::IValue packed = packed_weight(n).value();
      torch::jit::Module sub = submodule("Int8PaddedConv", packed, [&](torch::jit::Module& first) {
        first.register_attribute("pad_out", c10::IntType::get(), 0);
        first.register_attribute("pad_in", c10::IntType::get(), 0);
        first.register_attribute("padded", packed.type(), c10::IValue());
        first.define(padded_conv_source(), std::make_shared<QuantizedOpsResolver>());
      });
      sub.run_method("__setstate__", c10::ivalue::Tuple::create({packed, pad.first, pad.second, false}));
      call_instead(n, sub, "int8_padded_conv_" + std::to_string(padded++));
    }
    return padded;
  }

  void finish() {
    detail::inline_calls(*graph_);
    torch::jit::EliminateDeadCode(graph_);
    // forward has the submodules' op methods inlined; the file keeps only how to load them.
    for (const auto& [name, type] : classes_) {
      std::vector<std::string> inlined;
      for (const torch::jit::Function* method : type->methods()) {
        if (method->name() != "__getstate__" && method->name() != "__setstate__") inlined.push_back(method->name());
      }
      for (const std::string& method : inlined) type->unsafeRemoveMethod(method);
    }
  }

 private:
  static bool is_conv(const Node* n) { return is(n, "quantized::conv2d") || is(n, "quantized::conv2d_relu"); }

  // The packed weight op `n` reads from an attribute of the model that nothing else reads.
  std::optional<c10::IValue> packed_weight(const Node* n) {
    const Node* get = n->input(1)->node();
    if (get->kind() != c10::prim::GetAttr || get->input(0) != self_ || get->output()->uses().size() != 1 ||
        reads_[get->s(c10::attr::name)] != 1) {
      return std::nullopt;
    }
    return module_.attr(get->s(c10::attr::name));
  }

  // The first result of LibTorch's operator `op` (conv2d_unpack: the int8 weight; conv2d_groups)
  // on the packed weight of `n`.
  c10::IValue packed_op(const Node* n, const char* op) {
    torch::jit::Stack stack{packed_weight(n).value()};
    c10::Dispatcher::singleton().findSchemaOrThrow(op, "").callBoxed(&stack);
    return stack.at(0);
  }

  // The one node reading `v`, shape-rank queries aside; nullptr when there are several.
  static Node* single_reader(const Value* v) {
    Node* reader = nullptr;
    for (const torch::jit::Use& use : v->uses()) {
      if (is(use.user, "aten::dim")) continue;
      if (reader != nullptr) return nullptr;
      reader = use.user;
    }
    return reader;
  }

  // A new submodule of class `cls`, its attributes uninitialised until its __setstate__ runs.
  // The class is made once, with `training` and `packed` (of `packed`'s type) and what `define`
  // adds (its other attributes and its methods), and shared by every submodule of that kind.
  torch::jit::Module submodule(const std::string& cls, const c10::IValue& packed,
                               const std::function<void(torch::jit::Module&)>& define) {
    auto type = classes_.find(cls);
    if (type == classes_.end()) {
      torch::jit::Module first(c10::QualifiedName("__torch__.shrink." + cls), module_._ivalue()->compilation_unit(),
                               /*shouldMangle=*/true);
      first.register_attribute("training", c10::BoolType::get(), false);
      first.register_attribute("packed", packed.type(), packed);
      define(first);
      type = classes_.emplace(cls, first.type()).first;
    }
    return torch::jit::Module(c10::ivalue::Object::create(
        c10::StrongTypePtr(module_._ivalue()->compilation_unit(), type->second), type->second->numAttributes()));
  }

  // `n` (op(x, packed, scale, zero_point)) becomes sub.<n's op name>(x, scale, zero_point); the
  // packed weight now lives in `sub` only (else the file would hold it twice).
  void call_instead(Node* n, const torch::jit::Module& sub, const std::string& name) {
    module_.register_module(name, sub);
    Node* get = n->input(1)->node();
    const std::string packed_name = get->s(c10::attr::name);
    torch::jit::WithInsertPoint guard(n);
    Node* get_sub = graph_->insertNode(graph_->createGetAttr(self_, name));
    Node* call = graph_->insertNode(
        graph_->create(c10::prim::CallMethod, {get_sub->output(), n->input(0), n->input(2), n->input(3)}));
    call->s_(c10::attr::name, n->kind().toUnqualString());
    call->output()->setType(c10::TensorType::get());
    n->output()->replaceAllUsesWith(call->output());
    n->destroy();
    get->destroy();
    module_._ivalue()->unsafeRemoveAttr(packed_name);  // the object's slot first, then the type's
    module_.type()->unsafeRemoveAttribute(packed_name);
  }

  torch::jit::Module& module_;
  std::shared_ptr<Graph> graph_;
  Value* self_;
  std::map<std::string, int> reads_;  // attribute -> GetAttr nodes reading it
  std::map<std::string, c10::ClassTypePtr> classes_;
};

}  // namespace

int fold_batchnorm(const std::string& model, const std::string& out_file) {
  torch::jit::Module module;
  try {
    module = torch::jit::load(model);
  } catch (const std::exception& e) {
    throw Error(model + ": cannot be loaded as TorchScript: " +
                std::string(e.what()).substr(0, std::string(e.what()).find('\n')));
  }
  module.eval();
  torch::jit::Module frozen = torch::jit::freeze_module(module);
  const int folded = fold_frozen_batchnorms(*frozen.get_method("forward").graph());
  const std::string partial = out_file + ".partial";
  frozen.save(partial);
  std::filesystem::rename(partial, out_file);
  return folded;
}

void use_int8_engine() {
  const auto engines = at::globalContext().supportedQEngines();
  SHRINK_CHECK(std::find(engines.begin(), engines.end(), at::QEngine::ONEDNN) != engines.end(),
               "int8: this LibTorch has no oneDNN quantized engine");
  at::globalContext().setQEngine(at::QEngine::ONEDNN);
}

Int8Export export_int8(const std::string& fake_quant_model, const std::string& out_file) {
  use_int8_engine();
  torch::jit::Module module;
  try {
    module = torch::jit::load(fake_quant_model);
  } catch (const std::exception& e) {
    throw Error(fake_quant_model + ": cannot be loaded as TorchScript: " +
                std::string(e.what()).substr(0, std::string(e.what()).find('\n')));
  }
  module.eval();
  Lowering lowering(module, fake_quant_model);
  Int8Export result = lowering.run();
  SHRINK_CHECK(result.quantized_ops > 0,
               fake_quant_model << ": int8 export: no convolution or linear could be lowered "
                                   "(their inputs, weights and outputs need 8-bit fake-quant sites)");
  torch::jit::Module frozen = torch::jit::freeze_module(module);
  torch::jit::FoldQuantizedPrepackingOps(frozen);
  LoadTimeKernels load_time(frozen);
  if (const int padded = load_time.pad_channels_before_pools()) {
    result.notes.push_back(std::to_string(padded) + " int8 convolution(s) get zero channels up to " +
                           std::to_string(kPoolLanes) + " around a max pool (its int8 kernel is vectorised over " +
                           std::to_string(kPoolLanes) + " channels), made when the model loads");
  }
  if (const int routed = load_time.route_small_batch_linears()) {
    result.notes.push_back(std::to_string(routed) + " int8 linear(s): inputs of at most " + std::to_string(kSmallRows) +
                           " rows run as a 1x1 int8 convolution on the same weight (LibTorch 1.13's oneDNN "
                           "linear rebuilds its kernel on every call; its convolution caches one), made when the "
                           "model loads");
  }
  load_time.finish();
  const std::string partial = out_file + ".partial";
  frozen.save(partial);
  std::filesystem::rename(partial, out_file);
  return result;
}

}  // namespace shrink
