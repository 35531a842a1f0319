// A model whose forward calls a quantizer plugin at every planned site.
//
// The forward graph is inlined (so each module *instance* has its own nodes, also where instances
// share a TorchScript class type) and a `shrink::quantize(x, quantizer, site)` call is inserted:
// after the weight's prim::GetAttr for weight/bias sites, before the op for `_input_N`, after it
// for `_output_0`. Each call runs through the quantizer's autograd bridge, so the module trains
// from C++ and every parameter, learnable quantizer state included, receives gradients.
#pragma once

#include <shrink/config_list.hpp>
#include <shrink/model.hpp>
#include <shrink/quantizer.hpp>

#include <ATen/core/Tensor.h>

#include <vector>

namespace shrink {

class QuantizedModel {
 public:
  // Replaces `model`'s module with a clone that shares its parameters and whose forward calls the
  // quantizer (a handle to the old module keeps the unquantized forward), and sets up one site
  // per planned site. Throws
  // shrink::Error for a site whose op cannot be found in the graph or whose type has no known
  // input/output. `model` and `quantizer` must outlive this object.
  QuantizedModel(Model& model, QuantizerInstance& quantizer, const std::vector<PlannedSite>& sites);

  at::Tensor forward(const at::Tensor& input);
  // Train or eval mode for the module and the quantizer together.
  void train(bool on = true);
  Model& model() { return *model_; }
  QuantizerInstance& quantizer() { return *quantizer_; }
  // The quantizer's site index of each planned site, in the same order.
  const std::vector<int>& site_ids() const { return site_ids_; }
  const std::vector<PlannedSite>& sites() const { return sites_; }

 private:
  Model* model_;
  QuantizerInstance* quantizer_;
  std::vector<PlannedSite> sites_;
  std::vector<int> site_ids_;
};

}  // namespace shrink
