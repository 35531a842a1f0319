// An activation's fake-quant becomes quantize_per_tensor (quint8) + dequantize: the quantized
// value is the twin of what the fake-quant computed. Weights' fake-quants are left to the rule of
// the op that reads them.
#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/int8/rules/rules.hpp"

namespace shrink::int8 {
namespace {

void lower_fake_quant(Lowering& lowering, torch::jit::Node* n) {
  const std::optional<FakeQuant> f = fake_quant_of(n);
  if (!f || lowering.is_weight(n->input(0))) return;
  const QParams p = lowering.activation_params(n, *f);
  torch::jit::Value* x = n->input(0);
  const Twin* twin = lowering.twin(x);
  if (twin != nullptr && twin->p == p) {
    n->output()->replaceAllUsesWith(x);  // already quantized so
  } else {
    torch::jit::WithInsertPoint guard(n);
    lowering.set_twin(n->output(), lowering.quantize(x, p), p);
  }
  lowering.kill(n);
}

}  // namespace

void add_fake_quant_rules(RuleTable& table) {
  table.add(kFakeQuantPerTensor, lower_fake_quant, {Needs::kNothing});
  // Per-channel activations are an error (activation_params says so); weights pass.
  table.add(kFakeQuantPerChannel, lower_fake_quant, {Needs::kNothing});
}

}  // namespace shrink::int8
