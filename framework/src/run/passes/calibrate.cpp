#include <shrink/graph/model.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>

#include "run/training.hpp"

#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <sstream>

namespace shrink {

std::string CalibratePass::name() const { return "calibrate[" + std::to_string(stage_) + "]"; }

// The quantizer records statistics over the asked batches of training samples (a random choice
// fixed by the seed, without touching the training RNG), with the model in eval mode and earlier
// stages quantizing as they would in inference; then each site turns them into parameters.
void CalibratePass::run(RunContext& c) {
  const CalibrationSpec& spec = c.experiment->compress[stage_].calibration;
  const int64_t batch = calibration_batch_size(c, spec);
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  c.set_training(false);
  QuantizerInstance& q = *c.quantizers[static_cast<std::size_t>(c.stages[stage_].quantizer)];
  // Every rank calibrates on its share of the global batches (`batch` samples per rank each);
  // the plugin combines the ranks' statistics (host API all_reduce).
  // Equal shares (each rank makes the same collective calls), at most the training set.
  const int64_t global =
      std::min(spec.batches * batch * c.world(), c.train.size() / c.world() * c.world());
  const at::Tensor order = seeded_order(c).narrow(0, 0, global);
  Loader loader(c.train, shard_positions(order, c.rank(), c.world(), false), batch, false, 0);
  Batch x;
  q.set_calibrating(true);
  try {
    // The data are finite (the loader checks); a site that sees NaN or inf says so itself.
    for (int64_t b = 1; loader.next(x); ++b) {
      // Every rank must run as many forwards (the plugin's collectives pair up batch by batch).
      SHRINK_CHECK(x.size() > 0 || c.world() == 1,
                   "calibrate[" << stage_ << "] batch " << b
                                << ": every sample of this rank's share is unreadable (skipped); "
                                   "fix or remove those files");
      if (x.size() > 0) c.model->module().forward({x.inputs});
    }
  } catch (...) {
    q.set_calibrating(false);
    throw;
  }
  q.set_calibrating(false);
  q.end_calibration();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  c.calibration.push_back({{"stage", static_cast<int64_t>(stage_)},
                           {"batches", spec.batches},
                           {"samples", global},
                           {"seconds", seconds}});
  std::ostringstream line;
  line << "calibrate: " << c.experiment->compress[stage_].plugin << " on " << global << " samples ("
       << spec.batches << " batches";
  if (c.world() > 1) line << " of " << batch << " on each of " << c.world() << " ranks";
  line << "), " << std::fixed << std::setprecision(2) << seconds << " s";
  c.say(line.str());
}

}  // namespace shrink
