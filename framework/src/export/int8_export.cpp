// Lowers a fake-quant TorchScript model to LibTorch's int8 kernels. See int8_export.hpp.
//
// Three steps: the lowering (int8/lowering.hpp: a walk over the inlined graph, each node lowered
// by the rule for its kind in int8/rules/), then LibTorch's own passes, freezing (weights become
// constants, training branches go) and FoldQuantizedPrepackingOps (the prepacked weights become
// attributes), then the kernels made when the model loads (load_time_kernels.hpp).
#include <shrink/core/error.hpp>
#include <shrink/export/int8_export.hpp>
#include <shrink/graph/model.hpp>

#include <shrink/graph/measure.hpp>

#include "export/int8/lowering.hpp"
#include "export/int8/rule_table.hpp"
#include "export/load_time_kernels.hpp"
#include "graph/graph_utils.hpp"

#include <ATen/Context.h>
#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/passes/quantization/finalize.h>
#include <torch/csrc/jit/serialization/import.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>

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

// One lowering of `file` with the ops in `keep_float` left float: the module as it will be saved.
struct Lowered {
  Int8Export result;
  torch::jit::Module module;
};

Lowered lower(const std::string& file, const std::set<std::string>& keep_float) {
  torch::jit::Module module = load_torchscript(file);
  module.eval();
  Int8Export result = int8::Lowering(module, file, int8::RuleTable::standard(), keep_float).run();
  torch::jit::Module frozen = torch::jit::freeze_module(module);
  torch::jit::FoldQuantizedPrepackingOps(frozen);
  note_load_time_kernels(detail::add_load_time_kernels(frozen), result);
  return {std::move(result), frozen};
}

// The time of model `num` over that of model `den` (the fastest of those named so, for "fp32") at
// the batch size of `rows` where it is smallest: int8 has to pay at every batch size timed, never
// slower at one for a gain at another.
double time_ratio(const std::vector<NamedModel>& models, const std::vector<LatencyRow>& rows,
                  const std::string& num, const std::string& den) {
  double worst = std::numeric_limits<double>::infinity();
  for (const LatencyRow& r : rows) {
    worst = std::min(worst, r.ms[static_cast<std::size_t>(fastest(models, r.ms, num))] /
                                r.ms[static_cast<std::size_t>(fastest(models, r.ms, den))]);
  }
  return worst;
}

constexpr double kSpread = 0.97;  // medians closer than this are the same speed

// Each region of `best` (when there are several) timed against `best` with that region float;
// a region slower in int8 at some batch size is left float. Returns the final lowering.
Lowered keep_faster_regions(const std::string& file, Lowered best, const Int8Timing& timing) {
  std::vector<Int8Region> timed = best.result.regions;
  if (timed.size() < 2) return best;
  std::set<std::string> keep_float;
  for (Int8Region& region : timed) {
    std::set<std::string> without = keep_float;
    without.insert(region.ops.begin(), region.ops.end());
    Lowered variant = lower(file, without);
    const std::vector<NamedModel> models = {{"int8", &best.module, true},
                                            {"variant", &variant.module, true}};
    const auto rows = latency_table(models, timing.sample_shape, timing.batches, 0, 150.0, 2);
    region.gain = time_ratio(models, rows, "variant", "int8");
    if (region.gain < kSpread) {
      region.int8 = false;
      keep_float = std::move(without);
      best = std::move(variant);
    }
  }
  best.result.regions = std::move(timed);
  return best;
}

// keep_faster_regions, then the whole model against the best fp32: not written (result.written
// false) when it is slower at some batch size, or when no region stayed int8.
Lowered only_where_it_pays(const std::string& file, Lowered best, const Int8Timing& timing) {
  at::NoGradGuard no_grad;
  ThreadCount one(1);
  best = keep_faster_regions(file, std::move(best), timing);
  torch::jit::Module fp32 = load_torchscript(timing.fp32_model);
  fp32.eval();
  torch::jit::Module frozen = frozen_for_inference(fp32);
  const std::vector<NamedModel> models = {
      {"fp32", &fp32}, {"fp32_frozen", &frozen}, {"int8", &best.module, true}};
  const auto rows = latency_table(models, timing.sample_shape, timing.batches, 0, 150.0, 2);
  best.result.speedup = time_ratio(models, rows, "fp32", "int8");
  const bool any_int8 = std::any_of(best.result.regions.begin(), best.result.regions.end(),
                                    [](const Int8Region& r) { return r.int8; });
  best.result.written = best.result.speedup >= kSpread && any_int8;
  return best;
}

}  // namespace

void use_int8_engine() {
  const auto engines = at::globalContext().supportedQEngines();
  SHRINK_CHECK(std::find(engines.begin(), engines.end(), at::QEngine::ONEDNN) != engines.end(),
               "int8: this LibTorch has no oneDNN quantized engine");
  at::globalContext().setQEngine(at::QEngine::ONEDNN);
}

Int8Export export_int8(const std::string& fake_quant_model, const std::string& out_file,
                       const Int8Timing* timing) {
  use_int8_engine();
  Lowered best = lower(fake_quant_model, {});
  SHRINK_CHECK(
      best.result.quantized_ops > 0,
      fake_quant_model << ": int8 export: no convolution or linear could be lowered "
                          "(their inputs, weights and outputs need 8-bit fake-quant sites)");
  if (timing != nullptr) {
    try {
      best = only_where_it_pays(fake_quant_model, std::move(best), *timing);
    } catch (const Error& e) {
      // Timing reports on a result; a model it cannot time (an fp32 model that does not freeze,
      // say) costs the check, not the export.
      best.result.notes.push_back(std::string("not timed against fp32, every int8 op kept: ") +
                                  e.what());
    }
    if (!best.result.written) return best.result;
  }
  save_torchscript(best.module, out_file);
  return best.result;
}

bool runs_int8_kernels(const torch::jit::Module& module) {
  const auto graph = detail::inlined_forward(module, detail::ForwardGraph::kCopy);
  for (const torch::jit::Node* node : graph->nodes()) {
    if (std::string(node->kind().toQualString()).rfind("quantized::", 0) == 0) return true;
  }
  return false;
}

}  // namespace shrink
