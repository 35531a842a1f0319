// The host side of pruning: a compress stage whose plugin is a weight masker or pruner. It masks
// the weights of the ops its config_list selects, on a schedule (one-shot, linear, AGP), keeps
// the masks applied through every later training step (weights and gradients), and reports what
// it pruned.
#pragma once

#include <shrink/config/config_list.hpp>
#include <shrink/graph/channel_removal.hpp>
#include <shrink/host/masker_instance.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace shrink {

// How the sparsity rises over a stage's mask updates u = 1..n towards a target s:
//   one_shot: s at the only update;  linear: s * u / n;
//   agp:      s * (1 - (1 - u / n)^3)   (Zhu and Gupta 2017, initial sparsity 0).
enum class Schedule { kOneShot, kLinear, kAgp };
Schedule schedule_from_name(const std::string& name, const std::string& where);
double scheduled_sparsity(Schedule kind, double target, int64_t update, int64_t updates);

// A global ranking across layers (NNI's total_sparsity / global_sort): each layer's importance
// scores (one per prunable unit: an output channel, or a weight), how many weights a unit holds,
// and how many units it may lose at most. Units are pruned lowest score first (ties: earlier
// layer, lower index) while the pruned weights stay within `sparsity` of all the weights.
// Returns the units pruned per layer.
struct RankedLayer {
  at::Tensor scores;
  int64_t elements_per_unit = 1;
  int64_t max_prune = 0;
};
std::vector<int64_t> allocate_global(const std::vector<RankedLayer>& layers, double sparsity);

// One pruned op: its parameters (shared with the model) and current masks.
struct MaskedOp {
  PruneTarget target;
  at::Tensor weight;  // the module's parameter
  at::Tensor bias;    // undefined without a bias
  at::Tensor weight_mask;
  at::Tensor bias_mask;  // undefined when the masker gave none
};

class PruningStage {
 public:
  // Checks that every target's op type is one the plugin handles and that the model has the
  // parameters; throws shrink::Error naming the op otherwise.
  PruningStage(const AlgorithmInfo& algorithm, const Options& options,
               std::vector<PruneTarget> targets, torch::jit::Module& module, std::string name);
  ~PruningStage();
  PruningStage(const PruningStage&) = delete;
  PruningStage& operator=(const PruningStage&) = delete;

  // Computes every target's mask at the given fraction of the schedule (update u of n) and
  // applies it.
  void update(Schedule kind, int64_t update, int64_t updates);
  // Weights (and biases) times their masks, in place; gradients likewise.
  void apply_masks();
  void mask_gradients();
  // Training hooks of the plugin: observe (after backward), the L1 penalty it asks for (a
  // differentiable scalar, undefined when none), update_epoch and step.
  void observe();
  at::Tensor penalty();
  // After channel removal: the parameters are the module's new ones, the masks sliced alike.
  void rebind(torch::jit::Module& module, const ChannelRemoval& removal);
  // For a pruner that observes outputs (ABI 1.4), while its stage trains: each pruned op's
  // output passes through shrink::tap, which keeps it and, in backward, multiplies it by its
  // gradient (summed over positions, per sample and channel) for observe(). tap_outputs rewrites
  // `module` (a clone sharing the parameters); untap_outputs takes the taps out again.
  bool observes_outputs() { return masker_->observes_outputs(); }
  void tap_outputs(torch::jit::Module& module);
  void untap_outputs(torch::jit::Module& module);
  void update_epoch(int epoch) { masker_->update_epoch(epoch); }
  void step() { masker_->step(); }

  const std::vector<MaskedOp>& ops() const { return ops_; }
  // The plugin's importance scores for ops()[i] (what a global ranking sees); undefined when it
  // gives none.
  at::Tensor importance(std::size_t i) {
    return masker_->importance(wrapper(ops_.at(i)), static_cast<int>(i));
  }
  // BatchNorms that follow a pruned convolution alone: a filter pruned away takes the
  // BatchNorm's channel with it (gamma and beta masked too), so that the channel is exactly zero
  // after it and can be removed for real.
  struct Follower {
    std::size_t leader;  // index in ops()
    std::string op_name;
    at::Tensor weight, bias;
    at::Tensor mask;  // per channel
  };
  const std::vector<Follower>& followers() const { return followers_; }
  // Ops whose channels are joined (residual adds): pruned with one mask, their importance scores
  // summed, so that the channels can be removed for real. Indices into ops().
  const std::vector<std::vector<std::size_t>>& shared_masks() const { return shared_; }
  const std::string& name() const { return name_; }
  const AlgorithmInfo& algorithm() const { return masker_->algorithm(); }

  // What the plugin is given for `op` (the parameters detached, shared with the model).
  WrapperSpec wrapper(const MaskedOp& op) const;

 private:
  void release_taps();  // forgets the taps' records
  void check_same_masks() const;

  std::unique_ptr<MaskerInstance> masker_;
  std::vector<MaskedOp> ops_;
  std::vector<Follower> followers_;
  std::vector<std::vector<std::size_t>> shared_;
  std::vector<int64_t> taps_;  // per op: its shrink::tap id while tapped
  std::string name_;
  double penalty_ = 0;
};

}  // namespace shrink
