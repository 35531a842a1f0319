#include <shrink/core/error.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>
#include <shrink/run/plan.hpp>

#include "run/training.hpp"

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/torch.h>

#include <dlfcn.h>

#include <algorithm>
#include <sstream>
#include <thread>

namespace shrink {
namespace {

// One BLAS thread: OpenBLAS's own pool and LibTorch's OpenMP pool otherwise fight over the cores
// (twice as slow training, docs/results.md). Called before any BLAS work.
void use_one_blas_thread() {
  using SetThreads = void (*)(int);
  if (auto* set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(1);
  }
}

void check_calibration_sizes(const RunContext& c) {
  for (std::size_t i = 0; i < c.experiment->compress.size(); ++i) {
    const CalibrationSpec& cal = c.experiment->compress[i].calibration;
    const int64_t batch = calibration_batch_size(c, cal), wanted = cal.batches * batch;
    SHRINK_CHECK(wanted <= c.train.size(),
                 cal.where << ": " << stage_name(i) << ".calibration: " << cal.batches
                           << " batches of " << batch << " need " << wanted
                           << " samples, the training set has " << c.train.size());
  }
}

// The intra-op threads: `threads`, but never more than this rank's share of the machine's cores
// (ranks that each take every core run many times slower than one process).
void set_threads(RunContext& c) {
  const Experiment& x = *c.experiment;
  const int ranks_here = std::max(1, c.options != nullptr ? c.options->world.local_world : 1);
  const int share = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / ranks_here);
  if (x.threads > share && ranks_here > 1) {
    c.say("threads: " + std::to_string(x.threads) + " lowered to " + std::to_string(share) +
          ": the " + std::to_string(ranks_here) + " ranks on this machine share its " +
          std::to_string(std::thread::hardware_concurrency()) + " cores");
    at::set_num_threads(share);
  } else if (x.threads > 0) {
    at::set_num_threads(static_cast<int>(x.threads));
  }
}

}  // namespace

void PrepareDataPass::run(RunContext& c) {
  const Experiment& x = *c.experiment;
  set_threads(c);
  use_one_blas_thread();
  // The profiling executor re-specialises the graph for training and made a step several times
  // slower than Python eager; the simple executor runs the graph as written.
  torch::jit::setGraphExecutorOptimize(false);
  at::globalContext().setFlushDenormal(true);
  torch::manual_seed(static_cast<uint64_t>(x.seed));
  std::ostringstream line;
  line << "data: " << c.train.size() << " training, " << c.test.size() << " test samples of shape "
       << c10::IntArrayRef(c.train.shape()) << " (" << x.data.format << ", " << c.train.workers()
       << (c.train.workers() == 1 ? " worker" : " workers") << ")";
  if (c.world() > 1) {
    line << "; " << c.world() << " ranks, each training on 1/" << c.world()
         << " of every epoch (batch " << x.batch_size << " each, " << x.batch_size * c.world()
         << " in all)";
  }
  c.say(line.str());
  for (const DataSplit* d : {&c.train, &c.test}) {
    for (const std::string& warning : d->source().warnings()) c.say("warning: " + warning);
  }
  check_calibration_sizes(c);
}

}  // namespace shrink
