#include "export/int8/rules/weighted.hpp"

#include "graph/graph_utils.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/jit/ir/constants.h>

namespace shrink::int8 {
namespace {

using detail::only_use;
using torch::jit::Node;
using torch::jit::Value;

// The per-tensor fake-quant (with constant parameters) reading `v` alone joins the chain; `v`
// becomes its output.
void take_fake_quant(FusedChain& chain, const Value*& v) {
  Node* f = only_use(v, {kFakeQuantPerTensor});
  if (f == nullptr || !fake_quant_of(f)) return;
  chain.nodes.push_back(f);
  chain.output_fq = f;
  v = f->output();
}

// relu, or hardtanh(0, 6) where the quantized range after it ends at or below 6 (so that
// saturating at the top of the range is the clamp at 6).
bool relu_like(const Node* r, const FakeQuant& after) {
  if (detail::is(r, "aten::relu") || detail::is(r, "aten::relu_")) return true;
  auto lo = torch::jit::constant_as<double>(r->input(1));
  auto hi = torch::jit::constant_as<double>(r->input(2));
  if (!lo || !hi || *lo != 0.0) return false;
  const double top =
      (static_cast<double>(after.qmax) - static_cast<double>(after.zero_point)) * after.scale;
  return top <= *hi * (1 + 1e-6);
}

// A ReLU reading `v` fuses (the int8 op's output saturates at zero) when a fake-quant follows it
// and its clamp is the saturation; otherwise it stays a separate op on the quantized output.
void take_relu(FusedChain& chain, const Value* v) {
  Node* r = only_use(v, {"aten::relu", "aten::relu_", "aten::hardtanh", "aten::hardtanh_"});
  if (r == nullptr) return;
  FusedChain with = chain;
  with.nodes.push_back(r);
  with.output_fq = nullptr;
  const Value* after = r->output();
  take_fake_quant(with, after);
  if (with.output_fq != nullptr && relu_like(r, *fake_quant_of(with.output_fq))) {
    with.relu = true;
    chain = std::move(with);
  }
}

// The bias: None (a constant, or an Optional attribute holding None), an attribute, a constant;
// undefined when it is computed.
at::Tensor bias_of(const Lowering& lowering, const Node* n, int64_t channels) {
  const Value* b = n->input(2);
  if (b->type()->kind() == c10::TypeKind::NoneType) return at::zeros({channels});
  if (lowering.is_weight(b)) {
    const at::Tensor a = lowering.attribute(b);
    return a.defined() ? a.detach().to(at::kFloat) : at::zeros({channels});
  }
  auto c = torch::jit::constant_as<at::Tensor>(b);
  return c ? c->to(at::kFloat) : at::Tensor();
}

// Folds `bn` into `w` (a per-channel scale of the weight scales by |k| too); false when one of
// its parameters is computed.
bool fold_batch_norm(const Lowering& lowering, const Node* bn, Int8Weight& w) {
  const int64_t c = w.channels;
  const at::Tensor gamma = batch_norm_input(lowering, bn, 1, c, 1.0);
  const at::Tensor beta = batch_norm_input(lowering, bn, 2, c, 0.0);
  const at::Tensor mean = batch_norm_input(lowering, bn, 3, c, 0.0);
  const at::Tensor var = batch_norm_input(lowering, bn, 4, c, 1.0);
  const auto eps = torch::jit::constant_as<double>(bn->input(7));
  if (!gamma.defined() || !beta.defined() || !mean.defined() || !var.defined() || !eps) {
    return false;
  }
  const at::Tensor k = detail::fold_batchnorm_into(w.weight, w.bias, gamma, beta, mean, var, *eps);
  w.scales = w.scales * k.abs().to(at::kDouble);
  return true;
}

// oneDNN takes symmetric int8 weights (zero point 0): each channel with another zero point gets
// the scale of its largest magnitude over 127. Returns whether any did.
bool make_symmetric(const at::Tensor& zero_points, Int8Weight& w) {
  const at::Tensor affine = zero_points != 0;
  if (!affine.any().item<bool>()) return false;
  const at::Tensor absmax = w.weight.abs().reshape({w.channels, -1}).amax(1).to(at::kDouble);
  w.scales = at::where(affine, at::clamp_min(absmax / 127.0, 1e-12), w.scales);
  return true;
}

}  // namespace

at::Tensor batch_norm_input(const Lowering& lowering, const Node* bn, std::size_t i,
                            int64_t channels, double fallback) {
  const Value* v = bn->input(i);
  if (v->type()->kind() == c10::TypeKind::NoneType) return at::full({channels}, fallback);
  if (lowering.is_weight(v)) {
    const at::Tensor a = lowering.attribute(v);
    return a.defined() ? a.detach().to(at::kFloat) : at::full({channels}, fallback);
  }
  auto c = torch::jit::constant_as<at::Tensor>(v);
  return c ? c->to(at::kFloat) : at::Tensor();
}

std::optional<WeightedOperands> weighted_operands(Lowering& lowering, Node* n) {
  const Twin* in = lowering.twin(n->input(0));
  const Node* weight_fq = n->input(1)->node();
  const std::optional<FakeQuant> wf = fake_quant_of(weight_fq);
  if (in == nullptr || !wf || !lowering.is_weight(weight_fq->input(0))) return std::nullopt;
  const at::Tensor weight = lowering.attribute(weight_fq->input(0));
  if (!weight.defined()) return std::nullopt;
  // Named by its module ("conv1") in what is reported.
  std::string module = lowering.weight_path(weight_fq->input(0));
  module = module.substr(0, module.rfind('.'));
  return WeightedOperands{*in, *wf, weight.detach().to(at::kFloat),
                          std::string(n->kind().toQualString()) + " (" + module + ")"};
}

std::optional<FusedChain> fused_chain(Lowering& lowering, Node* n, const std::string& name) {
  FusedChain chain;
  const Value* v = n->output();
  take_fake_quant(chain, v);
  const detail::ConvBatchNorm conv_bn = detail::batch_norm_after(n, kFakeQuantPerTensor);
  if (conv_bn.batch_norm != nullptr && conv_bn.site == chain.output_fq) {
    chain.batch_norm = conv_bn.batch_norm;
    chain.nodes.push_back(conv_bn.batch_norm);
    v = conv_bn.batch_norm->output();
    chain.output_fq = nullptr;  // a fake-quant before the BatchNorm measured the wrong values
    take_fake_quant(chain, v);
  }
  take_relu(chain, v);
  if (chain.output_fq == nullptr) {
    // The BatchNorm and ReLU after it would fuse into it: the site goes after the last of them.
    const Node* last =
        only_use(v, {"aten::relu", "aten::relu_", "aten::hardtanh", "aten::hardtanh_"});
    if (last == nullptr) last = v->node();
    lowering.note(name + " stays float: its output is not fake-quantized" +
                  (last == n ? std::string("; give it an _output_ site")
                             : "; quantize the output of " + lowering.describe(last) +
                                   " instead (an _output_ site there)"));
    return std::nullopt;
  }
  chain.out = lowering.activation_params(chain.output_fq, *fake_quant_of(chain.output_fq));
  return chain;
}

std::optional<Int8Weight> int8_weight(Lowering& lowering, Node* n, const WeightedOperands& op,
                                      const at::Tensor& weight, const Node* batch_norm) {
  const FakeQuant& wf = op.weight_fq;
  Int8Weight w;
  w.weight = fake_quantized(weight, wf);  // the weight as the fake-quant model used it
  w.channels = weight.size(0);
  w.scales = wf.per_channel ? wf.scales.to(at::kDouble).reshape({-1})
                            : at::full({w.channels}, wf.scale, at::kDouble);
  const at::Tensor zero_points = wf.per_channel ? wf.zero_points.to(at::kLong).reshape({-1})
                                                : at::full({w.channels}, wf.zero_point, at::kLong);
  w.bias = bias_of(lowering, n, w.channels);
  if (!w.bias.defined()) {
    lowering.note(op.name + " stays float: its bias is computed, not a parameter");
    return std::nullopt;
  }
  if (batch_norm != nullptr && !fold_batch_norm(lowering, batch_norm, w)) {
    lowering.note(op.name + " stays float: its BatchNorm has computed parameters");
    return std::nullopt;
  }
  if (make_symmetric(zero_points, w)) {
    lowering.note(op.name +
                  ": affine weights re-quantized symmetric per channel (oneDNN takes "
                  "zero point 0)");
  }
  w.scales = at::clamp_min(w.scales, 1e-12);
  return w;
}

Int8WeightValues insert_int8_weight(torch::jit::Graph& graph, const Int8Weight& w) {
  Value* weight = graph.insert(detail::sym("aten::quantize_per_channel"),
                               {graph.insertConstant(w.weight), graph.insertConstant(w.scales),
                                graph.insertConstant(at::zeros({w.channels}, at::kLong)),
                                int64_t{0}, static_cast<int64_t>(at::kQInt8)});
  return {weight, graph.insertConstant(w.bias.contiguous())};
}

void replace_with_int8(Lowering& lowering, Node* n, const FusedChain& chain, Value* q) {
  Value* f = lowering.set_twin(chain.output_fq->output(), q, chain.out);
  std::vector<Node*> replaced = {n};
  replaced.insert(replaced.end(), chain.nodes.begin(), chain.nodes.end());
  lowering.retire(replaced, f);
  lowering.count_quantized_op(n);
}

}  // namespace shrink::int8
