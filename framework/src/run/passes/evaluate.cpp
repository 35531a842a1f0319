#include <shrink/graph/model.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>

#include "run/training.hpp"

#include <torch/script.h>

#include <sstream>

namespace shrink {

void EvaluatePass::run(RunContext& c) {
  const double accuracy = evaluate(c, c.model->module(), c.test);
  (which_ == "baseline" ? c.summary.baseline_accuracy : c.summary.compressed_accuracy) = accuracy;
  std::ostringstream line;
  line.precision(4);
  line << which_ << " accuracy " << accuracy;
  c.say(line.str());
}

}  // namespace shrink
