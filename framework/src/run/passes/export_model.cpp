#include <shrink/core/logging.hpp>
#include <shrink/export/fake_quant_baking.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/graph/quantized_model.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>

#include "run/training.hpp"

#include <torch/script.h>

#include <cmath>
#include <filesystem>
#include <sstream>

namespace shrink {
namespace {

// Without a compress stage the result is the trained float model, model_fp32.pt: one fp32
// training that several experiments then start from (their `model:`).
std::string exported_name(const RunContext& c) {
  if (!c.quantizers.empty()) return "model_qat.pt";
  return c.pruners.empty() ? "model_fp32.pt" : "model_pruned.pt";
}

void score_reloaded(RunContext& c, Model& reloaded, bool quantized) {
  c.summary.exported_accuracy = evaluate(c, reloaded.module(), c.test);
  std::ostringstream line;
  line.precision(4);
  line << c.summary.exported_file << " accuracy " << c.summary.exported_accuracy;
  c.say(line.str());
  // ATen's fake-quant rounds to nearest; a plugin that quantizes otherwise (naive truncates, as
  // NNI's does) is only approximated by the exported model.
  if (quantized && c.summary.compressed_accuracy >= 0 &&
      std::abs(c.summary.exported_accuracy - c.summary.compressed_accuracy) > 0.005) {
    logging::warn("model_qat.pt scores " + std::to_string(c.summary.exported_accuracy) +
                  " where the run scored " + std::to_string(c.summary.compressed_accuracy) +
                  ": a plugin's fake-quant differs from ATen's round-to-nearest");
  }
}

// model_pruned.pt beside model_qat.pt: the pruned float model with the weights trained since
// (before the folded BatchNorms are baked into them), scored as a user reloads it.
void export_pruned_float(RunContext& c) {
  std::filesystem::create_directories(c.staging);
  const std::filesystem::path file = std::filesystem::path(c.staging) / "model_pruned.pt";
  save_torchscript(*c.pruned_float, file.string());
  if (!c.experiment->evaluate) return;
  torch::jit::Module reloaded = load_torchscript(file.string());
  c.summary.pruned_accuracy = evaluate(c, reloaded, c.test);
  std::ostringstream line;
  line.precision(4);
  line << "model_pruned.pt accuracy " << c.summary.pruned_accuracy;
  c.say(line.str());
}

}  // namespace

void ExportModelPass::run(RunContext& c) {
  const bool quantized = !c.quantizers.empty();
  if (c.pruned_float) export_pruned_float(c);
  c.summary.exported_file = exported_name(c);
  if (quantized) {
    for (auto& w : c.wrapped) w->bake_folded_batchnorms();
    bake_fake_quant(*c.model);
  }
  std::filesystem::create_directories(c.staging);
  const std::filesystem::path file = std::filesystem::path(c.staging) / c.summary.exported_file;
  save_torchscript(c.model->module(), file.string());
  // Check what was written: reload it as a user would and score it.
  auto reloaded = std::make_unique<Model>(Model::load(file.string()));
  if (c.experiment->evaluate) score_reloaded(c, *reloaded, quantized);
  if (quantized) c.exported = std::move(reloaded);
}

}  // namespace shrink
