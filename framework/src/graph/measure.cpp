#include <shrink/graph/measure.hpp>

#include "graph/graph_utils.hpp"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>

namespace shrink {

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

std::vector<double> median_latency(const std::vector<torch::jit::Module*>& modules,
                                   const at::Tensor& x, int runs) {
  using Clock = std::chrono::steady_clock;
  std::vector<std::vector<double>> times(modules.size());
  for (auto* m : modules) m->forward({x});
  for (int r = 0; r < runs; ++r) {
    for (std::size_t k = 0; k < modules.size(); ++k) {
      const auto start = Clock::now();
      modules[k]->forward({x});
      times[k].push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    }
  }
  std::vector<double> medians;
  for (auto& t : times) {
    std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

}  // namespace shrink
