#include <shrink/graph/measure.hpp>

#include <ATen/Parallel.h>

#include "graph/graph_utils.hpp"

#include <shrink/core/error.hpp>
#include <shrink/graph/model.hpp>

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/script.h>

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <sstream>

namespace shrink {

ThreadCount::ThreadCount(int n) : before_(at::get_num_threads()) { at::set_num_threads(n); }
ThreadCount::~ThreadCount() { at::set_num_threads(before_); }

std::string onednn_isa() {
  // LibTorch links oneDNN without its headers: the C API's one function, found where it loaded.
  using Query = int (*)();
  const auto query = reinterpret_cast<Query>(dlsym(RTLD_DEFAULT, "dnnl_get_effective_cpu_isa"));
  if (query == nullptr) return "";
  // dnnl_cpu_isa_t's values: each set includes the bits of those below it.
  static const std::pair<int, const char*> kNames[] = {{0x3e7, "AVX512_CORE_AMX"},
                                                       {0xe7, "AVX512_CORE_BF16"},
                                                       {0x67, "AVX512_CORE_VNNI"},
                                                       {0x27, "AVX512_CORE"},
                                                       {0x407, "AVX2_VNNI"},
                                                       {0x7, "AVX2"},
                                                       {0x3, "AVX"},
                                                       {0x1, "SSE41"}};
  const int isa = query();
  for (const auto& [bits, name] : kNames) {
    if ((isa & bits) == bits) return name;  // a newer set above AMX's still has AMX
  }
  std::ostringstream s;
  s << "0x" << std::hex << isa;
  return s.str();
}

int64_t count_macs(torch::jit::Module& module, const at::Tensor& x) {
  auto graph = module.get_method("forward").graph()->copy();
  detail::inline_calls(*graph);
  // The graph returns, besides its output, every conv/linear's output and weight.
  std::vector<torch::jit::Value*> outputs;
  for (torch::jit::Node* n : graph->nodes()) {
    if (detail::is(n, "aten::conv2d") || detail::is(n, "aten::linear")) {
      outputs.push_back(n->output());
      outputs.push_back(n->input(1));
    }
  }
  outputs.push_back(graph->outputs().at(0));
  torch::jit::Node* tuple = graph->createTuple(outputs);
  graph->appendNode(tuple);
  graph->eraseOutput(0);
  graph->registerOutput(tuple->output());
  torch::jit::GraphFunction fn("count_macs", graph, nullptr);
  torch::jit::Stack stack{module._ivalue(), x};
  fn.run(stack);
  const auto items = stack.back().toTupleRef().elements();
  int64_t macs = 0;
  for (std::size_t k = 0; k + 1 < items.size(); k += 2) {
    const at::Tensor out = items[k].toTensor(), w = items[k + 1].toTensor();
    macs += out.numel() / x.size(0) * (w.numel() / w.size(0));
  }
  return macs;
}

namespace {

double median_of(std::vector<double>& t) {
  std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
  return t[t.size() / 2];
}

}  // namespace

Medians median_latency(const std::vector<torch::jit::Module*>& modules, const at::Tensor& x,
                       int runs) {
  using Clock = std::chrono::steady_clock;
  SHRINK_CHECK(runs > 0, "latency: at least one round of timing is needed");
  const std::size_t n = modules.size();
  std::vector<std::vector<double>> warm(n), cold(n);
  for (auto* m : modules) m->forward({x});
  for (int r = 0; r < runs; ++r) {
    for (std::size_t turn = 0; turn < n; ++turn) {
      // Rotated, and reversed every other round: each model follows each other one in turn.
      const std::size_t at = r % 2 == 0 ? turn : n - 1 - turn;
      const std::size_t k = (at + static_cast<std::size_t>(r)) % n;
      for (int call = 0; call < kCallsPerTurn; ++call) {
        const auto start = Clock::now();
        modules[k]->forward({x});
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        (call == 0 ? cold : warm)[k].push_back(ms);
      }
    }
  }
  Medians medians;
  for (std::size_t k = 0; k < n; ++k) {
    medians.ms.push_back(median_of(warm[k]));
    medians.cold_ms.push_back(median_of(cold[k]));
  }
  return medians;
}

torch::jit::Module frozen_for_inference(const torch::jit::Module& module) {
  detail::GraphOptimizeOn on;  // freezing inlines the methods it then drops
  torch::jit::Module copy = module.clone();
  copy.eval();
  try {
    torch::jit::Module frozen = torch::jit::freeze(copy);
    return torch::jit::optimize_for_inference(frozen);
  } catch (const std::exception& e) {
    throw Error("cannot be frozen for inference: " + interpreter_error_line(e));
  }
}

namespace {

// oneDNN's prepacked convolutions of a frozen + optimize_for_inference model warn that their
// output buffer is resized whenever the batch size changes: said once per batch size and model,
// it tells a user of the table nothing.
class QuietWarnings : public c10::WarningHandler {
 public:
  void process(const c10::SourceLocation&, const std::string&, const bool) override {}
};

// One forward; a model that does not take the input says so in one line.
double timed_forward(const NamedModel& m, const at::Tensor& x) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  try {
    m.module->forward({x});
  } catch (const std::exception& e) {
    throw Error("the " + m.name + " model does not take input of shape " + c10::str(x.sizes()) +
                ": " + interpreter_error_line(e));
  }
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

int fastest(const std::vector<NamedModel>& models, const std::vector<double>& ms,
            const std::string& name) {
  int best = -1;
  for (std::size_t k = 0; k < models.size(); ++k) {
    const std::string& m = models[k].name;
    if (m != name && m.rfind(name + "_", 0) != 0) continue;
    if (best < 0 || ms[k] < ms[static_cast<std::size_t>(best)]) {
      best = static_cast<int>(k);
    }
  }
  return best;
}

torch::jit::Module reloaded(const torch::jit::Module& module) {
  std::stringstream bytes;
  module.save(bytes);
  torch::jit::Module m = torch::jit::load(bytes);
  m.eval();
  return m;
}

std::vector<LatencyRow> latency_table(const std::vector<NamedModel>& models,
                                      const std::vector<int64_t>& sample_shape,
                                      const std::vector<int64_t>& batches, int runs,
                                      double budget_ms, int min_runs) {
  detail::GraphOptimizeOn on;  // as a user runs the models
  QuietWarnings quiet;
  c10::Warning::WarningHandlerGuard no_warnings(&quiet);
  std::vector<LatencyRow> rows;
  for (int64_t batch : batches) {
    std::vector<int64_t> sizes = {batch};
    sizes.insert(sizes.end(), sample_shape.begin(), sample_shape.end());
    const at::Tensor x = at::randn(sizes);
    std::vector<torch::jit::Module> copies;
    copies.reserve(models.size());
    std::vector<torch::jit::Module*> turns;
    for (const NamedModel& m : models) {
      turns.push_back(m.fresh ? &copies.emplace_back(reloaded(*m.module)) : m.module);
    }
    double slowest = 0;  // per run of a warmed-up model
    for (std::size_t k = 0; k < models.size(); ++k) {
      const NamedModel timed{models[k].name, turns[k]};
      // Warm-up: the profiling executor settles.
      for (int i = 0; i < 3; ++i) timed_forward(timed, x);
      slowest = std::max(slowest, timed_forward(timed, x));
    }
    LatencyRow row;
    row.batch = batch;
    const double per_round = std::max(slowest, 0.01) * kCallsPerTurn;
    row.runs = runs > 0 ? runs
                        : static_cast<int>(std::clamp(budget_ms / per_round,
                                                      static_cast<double>(min_runs), 500.0));
    Medians medians = median_latency(turns, x, row.runs);
    row.ms = std::move(medians.ms);
    row.cold_ms = std::move(medians.cold_ms);
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace shrink
