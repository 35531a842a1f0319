#include "export/load_time_kernels.hpp"

#include "graph/graph_utils.hpp"

#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/frontend/sugared_value.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/custom_class.h>

#include <functional>
#include <map>
#include <optional>
#include <utility>

namespace shrink::detail {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

const char* const kLinearParams = "__torch__.torch.classes.quantized.LinearPackedParamsBase";
const char* const kConvParams = "__torch__.torch.classes.quantized.Conv2dPackedParamsBase";

// `quantized.<op>` in TorchScript source compiled here: LibTorch's quantized:: operators.
struct QuantizedOpsResolver : torch::jit::Resolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(
      const std::string& name, torch::jit::GraphFunction& f,
      const torch::jit::SourceRange& loc) override {
    if (name == "quantized") return std::make_shared<torch::jit::BuiltinModule>("quantized");
    return torch::jit::nativeResolver()->resolveValue(name, f, loc);
  }
  c10::TypePtr resolveType(const std::string&, const torch::jit::SourceRange&) override {
    return nullptr;
  }
};

// `text` with every "$name" of `values` replaced by its value.
std::string filled(std::string text, const std::map<std::string, std::string>& values) {
  for (const auto& [name, value] : values) {
    const std::string key = "$" + name;
    for (auto at = text.find(key); at != std::string::npos;
         at = text.find(key, at + value.size())) {
      text.replace(at, key.size(), value);
    }
  }
  return text;
}

// Methods of the submodule that keeps a linear's packed weight (`packed`) and runs small batches
// as a 1x1 convolution (`small`, made by __setstate__).
constexpr const char* kSmallBatchLinearState = R"(
def __getstate__(self) -> Tuple[$params, bool]:
    return (self.packed, self.training)

def __setstate__(self, state: Tuple[$params, bool]) -> None:
    self.packed = state[0]
    self.training = state[1]
    w, b = quantized.linear_unpack(self.packed)
    self.small = quantized.conv2d_prepack(w.reshape([w.size(0), w.size(1), 1, 1]), b, [1, 1], [0, 0], [1, 1], 1)
)";
constexpr const char* kSmallBatchLinearOp = R"(
def $op(self, x: Tensor, scale: float, zero_point: int) -> Tensor:
    if x.dim() == 2 and x.size(0) > 0 and x.size(0) <= $rows:
        y = quantized.$conv(x.reshape([x.size(0), 1, 1, x.size(1)]).permute([0, 3, 1, 2]), self.small, scale, zero_point)
        return y.reshape([x.size(0), y.size(1)])
    return quantized.$op(x, self.packed, scale, zero_point)
)";

std::string small_batch_linear_source() {
  const std::string rows = std::to_string(kSmallRows);
  return filled(kSmallBatchLinearState, {{"params", kLinearParams}}) +
         filled(kSmallBatchLinearOp, {{"op", "linear"}, {"conv", "conv2d"}, {"rows", rows}}) +
         filled(kSmallBatchLinearOp,
                {{"op", "linear_relu"}, {"conv", "conv2d_relu"}, {"rows", rows}});
}

// Methods of the submodule that keeps a convolution's packed weight (`packed`, per-channel) and
// runs it with `pad_out` zero filters and `pad_in` zero input channels added (`padded`).
constexpr const char* kPaddedConvState = R"(
def __getstate__(self) -> Tuple[$params, int, int, bool]:
    return (self.packed, self.pad_out, self.pad_in, self.training)

def __setstate__(self, state: Tuple[$params, int, int, bool]) -> None:
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
constexpr const char* kPaddedConvOp = R"(
def $op(self, x: Tensor, scale: float, zero_point: int) -> Tensor:
    return quantized.$op(x, self.padded, scale, zero_point)
)";

std::string padded_conv_source() {
  return filled(kPaddedConvState, {{"params", kConvParams}}) +
         filled(kPaddedConvOp, {{"op", "conv2d"}}) + filled(kPaddedConvOp, {{"op", "conv2d_relu"}});
}

bool is_conv(const Node* n) {
  return is(n, "quantized::conv2d") || is(n, "quantized::conv2d_relu");
}

// The one node reading `v`, shape-rank queries aside; nullptr when there are several. (Not
// single_data_use: a size query reads the channel count, which padding would change.)
Node* single_reader(const Value* v) {
  Node* reader = nullptr;
  for (const torch::jit::Use& use : v->uses()) {
    if (is(use.user, "aten::dim")) continue;
    if (reader != nullptr) return nullptr;
    reader = use.user;
  }
  return reader;
}

class LoadTimeKernels {
 public:
  explicit LoadTimeKernels(torch::jit::Module& module)
      : module_(module),
        graph_(module.get_method("forward").graph()),
        self_(graph_->inputs().at(0)) {
    for (Node* n : all_nodes(graph_->block())) {
      if (n->kind() == c10::prim::GetAttr) ++reads_[n->s(c10::attr::name)];
    }
  }

  int route_small_batch_linears();
  int pad_channels_before_pools();
  void finish();

 private:
  using Pads = std::map<Node*, std::pair<int64_t, int64_t>>;  // convolution -> (pad_out, pad_in)
  Pads find_pads();
  Node* convolution_after_pools(Node* conv, int64_t channels);
  std::optional<c10::IValue> packed_weight(const Node* n);
  c10::IValue packed_op(const Node* n, const char* op);
  torch::jit::Module submodule(const std::string& cls, const c10::IValue& packed,
                               const std::function<void(torch::jit::Module&)>& define);
  void call_instead(Node* n, const torch::jit::Module& sub, const std::string& name);

  torch::jit::Module& module_;
  std::shared_ptr<Graph> graph_;
  Value* self_;
  std::map<std::string, int> reads_;  // attribute -> GetAttr nodes reading it
  std::map<std::string, c10::ClassTypePtr> classes_;
};

// Returns how many linears now run small batches as a convolution.
int LoadTimeKernels::route_small_batch_linears() {
  const c10::ClassTypePtr conv_params = torch::getCustomClass(kConvParams);
  if (!conv_params) return 0;
  int routed = 0;
  for (Node* n : all_nodes(graph_->block())) {
    if ((!is(n, "quantized::linear") && !is(n, "quantized::linear_relu")) || !packed_weight(n)) {
      continue;
    }
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
int LoadTimeKernels::pad_channels_before_pools() {
  const Pads pads = find_pads();
  int padded = 0;
  for (Node* n : all_nodes(graph_->block())) {  // in graph order: the submodules' names follow it
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
    sub.run_method("__setstate__",
                   c10::ivalue::Tuple::create({packed, pad.first, pad.second, false}));
    call_instead(n, sub, "int8_padded_conv_" + std::to_string(padded++));
  }
  return padded;
}

LoadTimeKernels::Pads LoadTimeKernels::find_pads() {
  Pads pads;
  for (Node* n : all_nodes(graph_->block())) {
    if (!is_conv(n) || !packed_weight(n)) continue;
    const at::Tensor w = packed_op(n, "quantized::conv2d_unpack").toTensor();
    // Grouped convolutions would read other input channels with more filters.
    if (w.size(0) >= kPoolLanes || w.qscheme() != at::kPerChannelAffine ||
        packed_op(n, "quantized::conv2d_groups").toInt() != 1) {
      continue;
    }
    Node* next = convolution_after_pools(n, w.size(0));
    if (next == nullptr) continue;
    pads[n].first = kPoolLanes - w.size(0);
    pads[next].second = kPoolLanes - w.size(0);
  }
  return pads;
}

// The convolution that reads `conv`'s output (of `channels` channels) through one or more max
// pools, shape queries aside, with a per-channel weight over exactly those channels; nullptr when
// the output goes anywhere else.
Node* LoadTimeKernels::convolution_after_pools(Node* conv, int64_t channels) {
  Value* v = conv->output();
  bool pooled = false;
  while (Node* user = single_reader(v)) {
    if (is(user, "aten::max_pool2d") && user->input(0) == v) {
      pooled = true;
      v = user->output();
      continue;
    }
    if (!pooled || !is_conv(user) || user->input(0) != v || !packed_weight(user)) return nullptr;
    const at::Tensor next_w = packed_op(user, "quantized::conv2d_unpack").toTensor();
    const bool fits = next_w.size(1) == channels && next_w.qscheme() == at::kPerChannelAffine;
    return fits ? user : nullptr;
  }
  return nullptr;
}

void LoadTimeKernels::finish() {
  inline_calls(*graph_);
  torch::jit::EliminateDeadCode(graph_);
  // forward has the submodules' op methods inlined; the file keeps only how to load them.
  for (const auto& [name, type] : classes_) {
    std::vector<std::string> inlined;
    for (const torch::jit::Function* method : type->methods()) {
      if (method->name() != "__getstate__" && method->name() != "__setstate__") {
        inlined.push_back(method->name());
      }
    }
    for (const std::string& method : inlined) type->unsafeRemoveMethod(method);
  }
}

// The packed weight op `n` reads from an attribute of the model that nothing else reads.
std::optional<c10::IValue> LoadTimeKernels::packed_weight(const Node* n) {
  const Node* get = n->input(1)->node();
  if (get->kind() != c10::prim::GetAttr || get->input(0) != self_ ||
      get->output()->uses().size() != 1 || reads_[get->s(c10::attr::name)] != 1) {
    return std::nullopt;
  }
  return module_.attr(get->s(c10::attr::name));
}

// The first result of LibTorch's operator `op` (conv2d_unpack: the int8 weight; conv2d_groups)
// on the packed weight of `n`.
c10::IValue LoadTimeKernels::packed_op(const Node* n, const char* op) {
  torch::jit::Stack stack{packed_weight(n).value()};
  c10::Dispatcher::singleton().findSchemaOrThrow(op, "").callBoxed(&stack);
  return stack.at(0);
}

// A new submodule of class `cls`, its attributes uninitialised until its __setstate__ runs.
// The class is made once, with `training` and `packed` (of `packed`'s type) and what `define`
// adds (its other attributes and its methods), and shared by every submodule of that kind.
torch::jit::Module LoadTimeKernels::submodule(
    const std::string& cls, const c10::IValue& packed,
    const std::function<void(torch::jit::Module&)>& define) {
  auto type = classes_.find(cls);
  if (type == classes_.end()) {
    torch::jit::Module first(c10::QualifiedName("__torch__.shrink." + cls),
                             module_._ivalue()->compilation_unit(), /*shouldMangle=*/true);
    first.register_attribute("training", c10::BoolType::get(), false);
    first.register_attribute("packed", packed.type(), packed);
    define(first);
    type = classes_.emplace(cls, first.type()).first;
  }
  return torch::jit::Module(c10::ivalue::Object::create(
      c10::StrongTypePtr(module_._ivalue()->compilation_unit(), type->second),
      type->second->numAttributes()));
}

// `n` (op(x, packed, scale, zero_point)) becomes sub.<n's op name>(x, scale, zero_point); the
// packed weight now lives in `sub` only (else the file would hold it twice).
void LoadTimeKernels::call_instead(Node* n, const torch::jit::Module& sub,
                                   const std::string& name) {
  module_.register_module(name, sub);
  Node* get = n->input(1)->node();
  const std::string packed_name = get->s(c10::attr::name);
  torch::jit::WithInsertPoint guard(n);
  Node* get_sub = graph_->insertNode(graph_->createGetAttr(self_, name));
  Node* call = graph_->insertNode(graph_->create(
      c10::prim::CallMethod, {get_sub->output(), n->input(0), n->input(2), n->input(3)}));
  call->s_(c10::attr::name, n->kind().toUnqualString());
  call->output()->setType(c10::TensorType::get());
  n->output()->replaceAllUsesWith(call->output());
  n->destroy();
  get->destroy();
  module_._ivalue()->unsafeRemoveAttr(packed_name);  // the object's slot first, then the type's
  module_.type()->unsafeRemoveAttribute(packed_name);
}

}  // namespace

LoadTimeKernelCounts add_load_time_kernels(torch::jit::Module& frozen) {
  LoadTimeKernels kernels(frozen);
  LoadTimeKernelCounts counts;
  counts.padded_convolutions = kernels.pad_channels_before_pools();
  counts.small_batch_linears = kernels.route_small_batch_linears();
  kernels.finish();
  return counts;
}

}  // namespace shrink::detail
