// Weight maskers and pruners (NNI's), against the public SDK only:
//   level     unstructured magnitude pruning
//   l1_norm   filters (output channels) with the smallest L1 norm
//   l2_norm   filters with the smallest L2 norm
//   fpgm      filters nearest the geometric median (smallest sum of distances to the others)
//   slim      BatchNorm2d channels with the smallest |gamma|; asks the host for an L1 penalty on
//             the scales while its stage trains (network slimming)
//   taylor    filters with the smallest first-order Taylor importance, accumulated over the
//             training steps it observes: from each filter's output and its gradient
//             (criterion: activation, the default) or sum((w * dL/dw)^2) (criterion: weight)
// Each prunes exactly floor(units * sparsity) units (never all filters of a layer), the lowest
// scores first; each gives its scores to the host for a global ranking across layers.
#include <shrink/sdk.hpp>

#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// floor(units * sparsity), robust to 0.29 * 100 = 28.999999999999996.
int64_t units_to_prune(int64_t units, double sparsity) {
  return static_cast<int64_t>(std::floor(static_cast<double>(units) * sparsity + 1e-9));
}

// A 0/1 mask over `scores` (any shape) with the `count` lowest scores at 0 (ties: lower index
// first, so the count is exact).
torch::Tensor lowest_zeroed(const torch::Tensor& scores, int64_t count) {
  torch::Tensor flat = scores.reshape({-1}).to(torch::kDouble);
  torch::Tensor mask = torch::ones_like(flat, torch::kFloat);
  if (count > 0) {
    const torch::Tensor order =
        std::get<1>(flat.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
    mask.index_fill_(0, order.narrow(0, 0, count), 0.0);
  }
  return mask.reshape(scores.sizes());
}

// Filter pruning: a score per output channel; the whole filter (and its bias) goes.
class FilterMasker : public shrink::WeightMasker {
 public:
  using WeightMasker::WeightMasker;
  virtual torch::Tensor filter_scores(const shrink::Wrapper& wrapper, int wrapper_idx) = 0;

  torch::Tensor importance(const shrink::Wrapper& wrapper, int wrapper_idx) override {
    return filter_scores(wrapper, wrapper_idx).to(torch::kFloat);
  }

  shrink::Masks calc_mask(double sparsity, const shrink::Wrapper& wrapper,
                          int wrapper_idx) override {
    const torch::Tensor& w = wrapper.weight;
    if (w.dim() < 1) throw std::runtime_error(wrapper.name + ": the weight has no output channels");
    const int64_t filters = w.size(0);
    // NNI: a layer with fewer than 2 filters or nothing to prune keeps its mask; never prune all.
    int64_t prune = units_to_prune(filters, sparsity);
    prune = std::min(prune, filters - 1);
    torch::Tensor keep = filters < 2 || prune < 1
                             ? torch::ones({filters})
                             : lowest_zeroed(filter_scores(wrapper, wrapper_idx), prune);
    std::vector<int64_t> shape(static_cast<std::size_t>(w.dim()), 1);
    shape[0] = filters;
    shrink::Masks m;
    m.weight_mask = keep.reshape(shape).expand(w.sizes()).contiguous().to(w.scalar_type());
    if (wrapper.bias.defined()) m.bias_mask = keep.to(wrapper.bias.scalar_type());
    return m;
  }
};

class L1Norm : public FilterMasker {
 public:
  using FilterMasker::FilterMasker;
  torch::Tensor filter_scores(const shrink::Wrapper& w, int) override {
    return w.weight.reshape({w.weight.size(0), -1}).abs().sum(1);
  }
};

class L2Norm : public FilterMasker {
 public:
  using FilterMasker::FilterMasker;
  torch::Tensor filter_scores(const shrink::Wrapper& w, int) override {
    return w.weight.reshape({w.weight.size(0), -1}).pow(2).sum(1).sqrt();
  }
};

// FPGM (He et al. 2019): a filter near the geometric median of its layer's filters is the most
// replaceable; its score is the sum of its L2 distances to all the others.
class Fpgm : public FilterMasker {
 public:
  using FilterMasker::FilterMasker;
  torch::Tensor filter_scores(const shrink::Wrapper& w, int) override {
    const torch::Tensor f = w.weight.reshape({w.weight.size(0), -1}).to(torch::kDouble);
    return torch::cdist(f.unsqueeze(0), f.unsqueeze(0)).squeeze(0).sum(1);
  }
};

// Slimming (Liu et al. 2017): BatchNorm2d channels ranked by |gamma|.
class SlimMasker : public FilterMasker {
 public:
  using FilterMasker::FilterMasker;
  torch::Tensor filter_scores(const shrink::Wrapper& w, int) override { return w.weight.abs(); }
};

// Unstructured magnitude pruning.
class LevelMasker : public shrink::WeightMasker {
 public:
  using WeightMasker::WeightMasker;
  torch::Tensor importance(const shrink::Wrapper& w, int) override {
    return w.weight.abs().to(torch::kFloat);
  }
  shrink::Masks calc_mask(double sparsity, const shrink::Wrapper& w, int) override {
    shrink::Masks m;
    m.weight_mask = lowest_zeroed(w.weight.abs(), units_to_prune(w.weight.numel(), sparsity))
                        .to(w.weight.scalar_type());
    return m;
  }
};

// Each algorithm is a Pruner around its masker, so that the host's schedule and hooks reach it.
template <typename M>
class Pruned : public shrink::Pruner {
 public:
  explicit Pruned(const shrink::Config& options, const std::vector<std::string>& known = {})
      : Pruner(options) {
    options.require_known_keys(known);
    masker = std::make_unique<M>(options);
  }
};

class Slim : public Pruned<SlimMasker> {
 public:
  explicit Slim(const shrink::Config& options)
      : Pruned(options, {"scale"}), scale_(options.get_double("scale", 1e-4)) {
    if (!(scale_ >= 0.0) || !std::isfinite(scale_)) {
      throw std::runtime_error("slim: option scale must be a finite value >= 0, got " +
                               options.get("scale", ""));
    }
  }
  double l1_penalty() const override { return scale_; }

 private:
  double scale_;
};

// First-order Taylor importance, summed over the training steps observed since a layer's last
// mask. criterion: activation (default; Molchanov et al. 2017): per output channel, the mean over
// a step's samples of |sum over positions of output * dLoss/doutput|, the first-order estimate
// of what zeroing that feature map would change in the loss; l2-normalised per layer (their
// Eq. 10) so that layers rank together in a global sparsity. criterion: weight (Molchanov et al.
// 2019, NNI's TaylorFOWeightFilter): sum over a filter of (w * dL/dw)^2.
class TaylorMasker : public FilterMasker {
 public:
  explicit TaylorMasker(const shrink::Config& options) : FilterMasker(options) {
    const std::string criterion = options.get("criterion", "activation");
    if (criterion != "activation" && criterion != "weight") {
      throw std::runtime_error("taylor: option criterion is '" + criterion +
                               "', expected activation or weight");
    }
    by_outputs_ = criterion == "activation";
  }
  bool observes_outputs() const { return by_outputs_; }
  torch::Tensor filter_scores(const shrink::Wrapper& w, int wrapper_idx) override {
    auto it = contributions_.find(wrapper_idx);
    if (it == contributions_.end()) {
      throw std::runtime_error("taylor: no training step observed for " + w.name +
                               "; it ranks filters by gradients, so its stage must train "
                               "(a schedule over steps or epochs)" +
                               (by_outputs_ ? std::string(", and criterion activation needs a host "
                                                          "that passes outputs (plugin ABI 1.4)")
                                            : std::string()));
    }
    // Each rank observed its own samples: the mean over ranks is every sample's (by weight, the
    // gradients are already averaged and this changes nothing).
    shrink::all_reduce(it->second, shrink::Reduce::kMean);
    if (!by_outputs_) return it->second;
    const torch::Tensor norm = it->second.norm();
    return norm.item<double>() > 0 ? it->second / norm : it->second;
  }
  shrink::Masks calc_mask(double sparsity, const shrink::Wrapper& w, int wrapper_idx) override {
    shrink::Masks m = FilterMasker::calc_mask(sparsity, w, wrapper_idx);
    contributions_.erase(wrapper_idx);  // the next mask ranks on fresh statistics
    return m;
  }
  void observe(const shrink::Wrapper& w, int wrapper_idx) {
    torch::Tensor c;
    if (!by_outputs_) {
      if (!w.weight_grad.defined()) return;
      c = (w.weight * w.weight_grad).pow(2).reshape({w.weight.size(0), -1}).sum(1);
    } else {
      if (!w.output_grad_product.defined()) return;  // the op did not run in this step
      const torch::Tensor& p = w.output_grad_product;
      if (p.dim() != 2 || p.size(1) != w.weight.size(0)) {
        std::ostringstream shape;
        shape << p.sizes();
        throw std::runtime_error("taylor: " + w.name + ": output_grad_product has shape " +
                                 shape.str() + ", expected [samples, " +
                                 std::to_string(w.weight.size(0)) + "]");
      }
      c = p.abs().mean(0);
    }
    c = c.to(torch::kDouble);
    auto it = contributions_.find(wrapper_idx);
    if (it == contributions_.end()) {
      contributions_.emplace(wrapper_idx, c);
    } else {
      it->second.add_(c);
    }
  }

 private:
  bool by_outputs_ = true;  // criterion: activation
  std::map<int, torch::Tensor> contributions_;
};

class Taylor : public Pruned<TaylorMasker> {
 public:
  static constexpr bool kRanksInTraining = true;  // masks after the steps it observed
  explicit Taylor(const shrink::Config& options) : Pruned(options, {"criterion"}) {}
  void observe(const shrink::Wrapper& w, int wrapper_idx) override {
    static_cast<TaylorMasker*>(masker.get())->observe(w, wrapper_idx);
  }
  bool observes_outputs() const override {
    return static_cast<const TaylorMasker*>(masker.get())->observes_outputs();
  }
};

}  // namespace

SHRINK_PLUGIN("pruning", "1.0.0") {
  plugin.pruner<Pruned<LevelMasker>>("level", "Unstructured magnitude pruning (NNI's LevelPruner)");
  plugin.pruner<Pruned<L1Norm>>("l1_norm", "Filter pruning by L1 norm (NNI's L1NormPruner)",
                                "Conv1d,Conv2d,Conv3d,Linear");
  plugin.pruner<Pruned<L2Norm>>("l2_norm", "Filter pruning by L2 norm (NNI's L2NormPruner)",
                                "Conv1d,Conv2d,Conv3d,Linear");
  plugin.pruner<Pruned<Fpgm>>("fpgm", "Filters nearest the geometric median (NNI's FPGMPruner)",
                              "Conv1d,Conv2d,Conv3d,Linear");
  plugin.pruner<Slim>(
      "slim", "BatchNorm2d channels by |gamma|, L1 penalty on gamma in training (NNI's SlimPruner)",
      "BatchNorm2d");
  plugin.pruner<Taylor>("taylor",
                        "Filters by first-order Taylor importance of their outputs, or of their "
                        "weights (NNI's TaylorFOWeightFilterPruner)",
                        "Conv1d,Conv2d,Conv3d,Linear");
}
