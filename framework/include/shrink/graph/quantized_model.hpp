// A model whose forward calls a quantizer plugin at every planned site.
//
// The forward graph is inlined (so each module *instance* has its own nodes, also where instances
// share a TorchScript class type) and a `shrink::quantize(x, quantizer, site)` call is inserted:
// after the weight's prim::GetAttr for weight/bias sites, before the op for `_input_N`, after it
// for `_output_0`. Each call runs through the quantizer's autograd bridge, so the module trains
// from C++ and every parameter, learnable quantizer state included, receives gradients.
#pragma once

#include <shrink/config/config_list.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include <ATen/core/Tensor.h>

namespace torch::jit {
struct Graph;
struct Node;
}  // namespace torch::jit

#include <memory>
#include <string>
#include <vector>

namespace shrink {

class QuantizedModel {
 public:
  // Replaces `model`'s module with a clone that shares its parameters and whose forward calls the
  // quantizer (a handle to the old module keeps the unquantized forward), and sets up one site
  // per planned site. Throws
  // shrink::Error for a site whose op cannot be found in the graph or whose type has no known
  // input/output. `model` and `quantizer` must outlive this object.
  //
  // With `fold_bn`, each Conv2d whose output goes only to a BatchNorm2d (possibly through the
  // conv's own output site) is rewritten for simulated folding, as torch.ao's ConvBn2d does it:
  //   sf = gamma / sqrt(running_var + eps)
  //   y  = conv(x, quantize(W * sf), None) / sf + b,   then the BatchNorm (batch statistics in
  //   training, running ones in evaluation), then the conv's output site if it has one
  // so that the weight site quantizes the folded weight, and evaluation computes exactly
  // conv(x, quantize(W * sf)) + (b - mean) * sf + beta. folded_batchnorms() names the pairs.
  QuantizedModel(Model& model, QuantizerInstance& quantizer, const std::vector<PlannedSite>& sites,
                 bool fold_bn = false);
  ~QuantizedModel();

  at::Tensor forward(const at::Tensor& input);
  // Train or eval mode for the module and the quantizer together.
  void train(bool on = true);
  Model& model() { return *model_; }
  QuantizerInstance& quantizer() { return *quantizer_; }
  // The planned sites that quantize (those merged into another are not among them), and the
  // quantizer's index of each, in the same order.
  const std::vector<int>& site_ids() const { return site_ids_; }
  const std::vector<PlannedSite>& sites() const { return sites_; }
  // Two activation sites on one tensor, directly or through ops that keep its values on the first
  // site's grid (ReLU, max pooling, dropout, reshapes): with the same settings the later one is
  // merged into the earlier (it quantizes nothing); with others both stay (`conflict` names the
  // settings that differ). A site planned with range_of quantizes its own tensor with the range of
  // another (`range_only`): its calls are that site's.
  struct SharedPoint {
    std::string site, into;            // "layer1.conv2._input_0", "layer1.conv1._output_0"
    std::vector<std::string> through;  // "relu", "max_pool2d"
    std::string conflict;              // "quant_bits 8 vs 4"; "" when merged
    bool range_only = false;           // another tensor, one range (PlannedSite::range_of)
    std::string text() const;          // a line for the plan and the log
  };
  const std::vector<SharedPoint>& shared_points() const { return shared_points_; }
  // "conv1 + batchnorm1" for each pair folded.
  std::vector<std::string> folded_batchnorms() const;
  // For export, after training: each folded pair becomes one convolution whose weight is the
  // constant W * sf (still through its weight site) and whose bias is (b - mean) * sf + beta, from
  // the current parameters and running statistics; the BatchNorm goes.
  void bake_folded_batchnorms();

 private:
  struct FoldedPair;
  struct Anchors;
  Anchors find_anchors(torch::jit::Graph& graph) const;
  // Inserts the calls of planned site `index`, which carry `index` until register_sites.
  std::vector<torch::jit::Node*> insert_site(torch::jit::Graph& graph, const PlannedSite& planned,
                                             int index, const Anchors& anchors);
  void merge_shared_points(const std::vector<PlannedSite>& sites,
                           std::vector<std::vector<torch::jit::Node*>>& calls);
  void register_sites(torch::jit::Graph& graph, const std::vector<PlannedSite>& sites,
                      const std::vector<std::vector<torch::jit::Node*>>& calls);
  void fold_batchnorms(torch::jit::Graph& graph);
  Model* model_;
  QuantizerInstance* quantizer_;
  std::vector<PlannedSite> sites_;
  std::vector<int> site_ids_;
  std::vector<SharedPoint> shared_points_;
  std::vector<std::unique_ptr<FoldedPair>> folded_;
};

}  // namespace shrink
