// The seed's `MyMasker` and `MyPruner` (NNI "Customize a new pruning algorithm"), translated to
// the Shrink SDK. Built and run by the tests (tests/sdk/seed_examples_test.cpp).
//
// NNI (Python)                                    Shrink (C++)
//   class MyMasker(WeightMasker)                   class MyMasker : public shrink::WeightMasker
//   def calc_mask(self, sparsity, wrapper,         shrink::Masks calc_mask(double sparsity,
//                 wrapper_idx=None)                    const shrink::Wrapper& wrapper, int
//                 wrapper_idx)
//   return {'weight_mask': mask}                   return {mask};
//   class MyPruner(Pruner)                         class MyPruner : public shrink::Pruner
//   self.masker = MyMasker(model, self)            masker = std::make_unique<MyMasker>(options);
//   wrapper.if_calculated (one-shot)               the experiment: schedule: {kind: one_shot}
//
// The seed leaves `mask = ...` open; here it is magnitude pruning: the `sparsity` fraction of
// weights with the smallest |w| is masked.
#include <shrink/sdk.hpp>

namespace {

class MyMasker : public shrink::WeightMasker {
 public:
  explicit MyMasker(const shrink::Config& options) : WeightMasker(options) {
    // You can do some initialization here, such as collecting some statistics data
    // if it is necessary for your algorithms to calculate the masks.
  }

  shrink::Masks calc_mask(double sparsity, const shrink::Wrapper& wrapper,
                          int wrapper_idx) override {
    (void)wrapper_idx;
    // calculate the masks based on the wrapper.weight, and sparsity,
    // and anything else
    torch::Tensor magnitude = wrapper.weight.abs().flatten();
    const int64_t n_pruned = static_cast<int64_t>(sparsity * magnitude.numel());
    torch::Tensor mask = torch::ones_like(wrapper.weight);
    if (n_pruned > 0) {
      torch::Tensor smallest = std::get<1>(magnitude.topk(n_pruned, 0, /*largest=*/false));
      mask.view(-1).index_fill_(0, smallest, 0);
    }
    return {mask};
  }
};

class MyPruner : public shrink::Pruner {
 public:
  // "Already pruned, do not prune again as a one-shot pruner": the host owns when masks are
  // computed (the stage's schedule; one_shot computes them once and keeps them).

  explicit MyPruner(const shrink::Config& options) : Pruner(options) {
    // construct a weight masker instance
    masker = std::make_unique<MyMasker>(options);
  }
};

}  // namespace

SHRINK_PLUGIN("my_pruner", "1.0.0") {
  plugin.masker<MyMasker>("my_masker", "The seed's MyMasker: magnitude weight masker");
  plugin.pruner<MyPruner>("my_pruner", "The seed's MyPruner: one-shot pruner around MyMasker");
}
