#include <shrink/graph/quantized_model.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>
#include <shrink/run/plan.hpp>

#include <torch/script.h>

#include <sstream>

namespace shrink {

using json = nlohmann::json;

std::string QuantizeStagePass::name() const { return stage_name(stage_); }

void QuantizeStagePass::run(RunContext& c) {
  const StageSpec& stage = c.experiment->compress[stage_];
  CheckedStage& checked = c.stages[stage_];
  checked.quantizer = static_cast<int>(c.quantizers.size());
  if (!c.pruners.empty() && c.quantizers.empty()) {
    c.pruned_float = std::make_shared<torch::jit::Module>(c.model->module());
  }
  auto q = std::make_unique<QuantizerInstance>(*checked.algorithm, stage.options);
  c.wrapped.push_back(std::make_unique<QuantizedModel>(*c.model, *q, checked.sites, stage.fold_bn));
  c.quantizers.push_back(std::move(q));
  const QuantizedModel& wrapped = *c.wrapped.back();
  const auto folded = wrapped.folded_batchnorms();
  c.folded_batchnorms.push_back(folded);
  std::ostringstream line;
  line << "compress: " << stage.plugin << " on " << wrapped.sites().size() << " sites";
  std::size_t borrowed = 0;  // sites that quantize with another's range (a cat's)
  for (const QuantizedModel::SharedPoint& p : wrapped.shared_points()) borrowed += p.range_only;
  const std::size_t merged = checked.sites.size() - wrapped.sites().size() - borrowed;
  if (merged > 0) line << " (" << merged << " merged into the site before them)";
  if (borrowed > 0) line << " (" << borrowed << " more quantizing with their cat's one range)";
  if (stage.fold_bn) {
    line << ", " << folded.size() << " BatchNorm" << (folded.size() == 1 ? "" : "s") << " folded";
    for (std::size_t k = 0; k < folded.size(); ++k) line << (k ? ", " : " (") << folded[k];
    if (!folded.empty()) line << ")";
  }
  c.say(line.str());
  for (const QuantizedModel::SharedPoint& p : wrapped.shared_points()) {
    c.shared_points.push_back(
        {{"site", p.site},
         {"into", p.into},
         {"through", p.through},
         {"merged", p.conflict.empty() && !p.range_only},
         {"range_only", p.range_only},
         {"conflict", p.conflict.empty() ? json(nullptr) : json(p.conflict)}});
    if (!p.conflict.empty()) c.say("warning: " + p.text());
  }
}

}  // namespace shrink
