#include <shrink/core/error.hpp>
#include <shrink/core/logging.hpp>
#include <shrink/export/fake_quant_baking.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include "graph/graph_utils.hpp"

#include <torch/script.h>

#include <cmath>

namespace shrink {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

// The ATen fake-quant of `cal` on `x`, inserted before `node`.
Value* insert_fake_quant(Graph& graph, Node* node, Value* x, const Calibration& cal,
                         QuantType type) {
  torch::jit::WithInsertPoint guard(node);
  if (cal.scale.numel() == 1) {
    return graph.insert(detail::sym("aten::fake_quantize_per_tensor_affine"),
                        {x, cal.scale.item<double>(),
                         static_cast<int64_t>(std::llround(cal.zero_point.item<double>())),
                         cal.quant_min, cal.quant_max});
  }
  const int64_t axis = type == QuantType::kWeight ? 0 : 1;
  return graph.insert(detail::sym("aten::fake_quantize_per_channel_affine"),
                      {x, graph.insertConstant(cal.scale.to(at::kFloat).reshape({-1})),
                       graph.insertConstant(cal.zero_point.round().to(at::kInt).reshape({-1})),
                       axis, cal.quant_min, cal.quant_max});
}

}  // namespace

void bake_fake_quant(Model& model) {
  auto graph = model.module().get_method("forward").graph();
  static const c10::Symbol kQuantize = detail::sym("shrink::quantize");
  std::vector<Node*> calls;
  // Sub-blocks too: a site may sit in a branch (mobilenet_v2's `if self.use_res_connect`).
  for (Node* node : detail::all_nodes(graph->block())) {
    if (node->kind() == kQuantize) calls.push_back(node);
  }
  for (Node* node : calls) {
    QuantizerInstance* q =
        QuantizerInstance::from_id(torch::jit::constant_as<int64_t>(node->input(1)).value());
    const int site = static_cast<int>(torch::jit::constant_as<int64_t>(node->input(2)).value());
    SHRINK_CHECK(q != nullptr, "export: a quantize call refers to a quantizer that is gone");
    const Calibration cal = q->export_site(site);
    const SiteSpec& spec = q->site_spec(site);
    Value* out = node->input(0);
    if (!cal.scale.defined() || !(cal.scale.min().item<double>() > 0)) {
      // A site that never saw data (an input never reached in training, say) has no range.
      logging::warn("export: " + spec.module_name + "." + spec.target +
                    " has no calibrated scale; it is left in float in model_qat.pt");
    } else {
      out = insert_fake_quant(*graph, node, node->input(0), cal, spec.quant_type);
    }
    node->output()->replaceAllUsesWith(out);
    node->destroy();
  }
}

}  // namespace shrink
