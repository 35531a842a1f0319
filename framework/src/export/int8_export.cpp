// Lowers a fake-quant TorchScript model to LibTorch's int8 kernels. See int8_export.hpp.
//
// Three steps: the lowering (int8/lowering.hpp: a walk over the inlined graph, each node lowered
// by the rule for its kind in int8/rules/), then LibTorch's own passes, freezing (weights become
// constants, training branches go) and FoldQuantizedPrepackingOps (the prepacked weights become
// attributes), then the kernels made when the model loads (load_time_kernels.hpp).
#include <shrink/core/error.hpp>
#include <shrink/export/int8_export.hpp>
#include <shrink/graph/model.hpp>

#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/load_time_kernels.hpp"
#include "graph/graph_utils.hpp"

#include <ATen/Context.h>
#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/passes/quantization/finalize.h>

#include <algorithm>

namespace shrink {
namespace {

// The result's notes for the load-time kernels.
void note_load_time_kernels(const detail::LoadTimeKernelCounts& counts, Int8Export& result) {
  const std::string lanes = std::to_string(detail::kPoolLanes);
  if (counts.padded_convolutions > 0) {
    result.notes.push_back(std::to_string(counts.padded_convolutions) +
                           " int8 convolution(s) get zero channels up to " + lanes +
                           " around a max pool (its int8 kernel is vectorised over " + lanes +
                           " channels), made when the model loads");
  }
  if (counts.small_batch_linears > 0) {
    result.notes.push_back(
        std::to_string(counts.small_batch_linears) + " int8 linear(s): inputs of at most " +
        std::to_string(detail::kSmallRows) +
        " rows run as a 1x1 int8 convolution on the same weight (LibTorch 1.13's oneDNN linear "
        "rebuilds its kernel on every call; its convolution caches one), made when the model "
        "loads");
  }
}

}  // namespace

void use_int8_engine() {
  const auto engines = at::globalContext().supportedQEngines();
  SHRINK_CHECK(std::find(engines.begin(), engines.end(), at::QEngine::ONEDNN) != engines.end(),
               "int8: this LibTorch has no oneDNN quantized engine");
  at::globalContext().setQEngine(at::QEngine::ONEDNN);
}

Int8Export export_int8(const std::string& fake_quant_model, const std::string& out_file) {
  use_int8_engine();
  torch::jit::Module module = load_torchscript(fake_quant_model);
  module.eval();
  Int8Export result = int8::Lowering(module, fake_quant_model, int8::RuleTable::standard()).run();
  SHRINK_CHECK(
      result.quantized_ops > 0,
      fake_quant_model << ": int8 export: no convolution or linear could be lowered "
                          "(their inputs, weights and outputs need 8-bit fake-quant sites)");
  torch::jit::Module frozen = torch::jit::freeze_module(module);
  torch::jit::FoldQuantizedPrepackingOps(frozen);
  note_load_time_kernels(detail::add_load_time_kernels(frozen), result);
  save_torchscript(frozen, out_file);
  return result;
}

bool runs_int8_kernels(const torch::jit::Module& module) {
  const auto graph = detail::inlined_forward(module, detail::ForwardGraph::kCopy);
  for (const torch::jit::Node* node : graph->nodes()) {
    if (std::string(node->kind().toQualString()).rfind("quantized::", 0) == 0) return true;
  }
  return false;
}

}  // namespace shrink
