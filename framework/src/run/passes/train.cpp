#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>

#include "run/training.hpp"

namespace shrink {

void TrainPass::run(RunContext& c) {
  const TrainSpec& spec = phase_ == "pretrain" ? c.experiment->pretrain : c.experiment->finetune;
  train_epochs(c, spec, phase_, c.progress(phase_), /*resumable=*/true);
}

}  // namespace shrink
