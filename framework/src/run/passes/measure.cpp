#include <shrink/graph/model.hpp>
#include <shrink/graph/quantized_model.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>

#include "run/training.hpp"

#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

namespace shrink {
namespace {

using Measure = QuantizerInstance::Measure;

void set_measuring(RunContext& c, Measure mode) {
  for (auto& q : c.quantizers) q->set_measuring(mode);
}

// The calibration samples: the first stage's that calibrates; else 4 training batches.
std::pair<int64_t, int64_t> measured_batches(const RunContext& c) {
  int64_t batches = 4, batch = c.experiment->batch_size;
  for (const StageSpec& stage : c.experiment->compress) {
    if (stage.calibration.batches > 0) {
      batches = stage.calibration.batches;
      batch = calibration_batch_size(c, stage.calibration);
      break;
    }
  }
  return {std::min(batches, c.train.size() / std::max<int64_t>(batch, 1)), batch};
}

// Each batch runs once in float (every site passes its input through) and once quantized; each
// site compares its output with the float model's value at the same point and with its input.
void measure_sites(RunContext& c) {
  const auto [batches, batch] = measured_batches(c);
  torch::NoGradGuard no_grad;
  c.set_training(false);
  const at::Tensor order = seeded_order(c);
  try {
    for (int64_t b = 0; b < batches; ++b) {
      const at::Tensor x = read_batch(c.train, order.narrow(0, b * batch, batch), false, 0).inputs;
      if (x.size(0) == 0) continue;  // every sample of it unreadable and skipped
      set_measuring(c, Measure::kReference);
      c.model->module().forward({x});
      set_measuring(c, Measure::kCompare);
      c.model->module().forward({x});
    }
  } catch (...) {
    set_measuring(c, Measure::kOff);
    throw;
  }
  set_measuring(c, Measure::kOff);
}

}  // namespace

void MeasurePass::run(RunContext& c) {
  measure_sites(c);
  std::vector<std::pair<double, std::string>> worst;
  for (const auto& w : c.wrapped) {
    for (std::size_t k = 0; k < w->sites().size(); ++k) {
      const double db = w->quantizer().sqnr_db(w->site_ids()[k]);
      if (std::isfinite(db)) worst.emplace_back(db, w->sites()[k].key());
    }
  }
  std::sort(worst.begin(), worst.end());
  if (worst.empty()) return;
  std::ostringstream line;
  line << "lowest site SQNR vs float:";
  for (std::size_t k = 0; k < std::min<std::size_t>(3, worst.size()); ++k) {
    line << (k ? ", " : " ") << worst[k].second << " " << std::fixed << std::setprecision(1)
         << worst[k].first << " dB";
  }
  c.say(line.str());
}

}  // namespace shrink
