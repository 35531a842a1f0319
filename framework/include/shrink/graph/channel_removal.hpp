// Real channel removal ("speed-up"): a model whose pruned channels are exactly zero gets them
// physically removed, so that it is smaller and faster, with the same outputs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace shrink {

// What removal did to one module.
struct ResizedModule {
  std::string name;                       // "conv2", "layer1.0.bn1"
  std::string type;                       // "Conv2d", "BatchNorm2d", "Linear"
  int64_t out_before = 0, out_after = 0;  // output channels (features)
  int64_t in_before = 0, in_after = 0;    // input channels (features); 0 where not applicable
  std::vector<int64_t> kept_out;          // indices kept, in the original numbering
  std::vector<int64_t> kept_in;
};

// Pruned (zero) filters of a convolution or linear whose channels could not go, and why.
struct KeptPruned {
  std::string name;
  int64_t channels = 0;
  std::string why;  // "its channels are also those of res2.block.3, which keep them"
};

struct ChannelRemoval {
  std::vector<ResizedModule> modules;  // only those that changed
  std::vector<KeptPruned> kept_pruned;
  int64_t parameters_before = 0, parameters_after = 0;
  int64_t channels_removed = 0;  // output channels of producers (conv, linear)
};

// Removes, in place, every output channel of a convolution or linear layer that is provably zero
// where it is read: its filter and bias are zero (or a BatchNorm after it zeroes it), and every op
// between it and the layers that read it maps zero to zero. What reads it loses the matching
// input channels (the next convolution or linear, after a flatten too; BatchNorm; depthwise
// convolutions, which lose them as well); channels joined by a residual add are removed only
// where every joined producer prunes them; concatenations carry each input's channels. Channels
// that reach the model's output stay. The forward graph is inlined and its flatten sizes
// adjusted; `module` becomes a clone with new methods (a method that has run would keep its old
// plan). Modules' size constants (in_channels, out_features: torch.nn declares them constant)
// keep their old values; the forward reads the tensors' shapes. Throws shrink::Error naming the
// op when a pruned channel flows into an op it cannot follow; no parameter has changed then.
ChannelRemoval remove_pruned_channels(torch::jit::Module& module);

// Convolutions and linears whose output channels are joined channel by channel (residual adds,
// through BatchNorms, ReLUs, pooling, depthwise convolutions), and the depthwise convolutions
// that read them (their channels are their input's): a channel can only go from all of them at
// once, so filter pruning gives them one mask. Groups of two or more module names, in graph
// order. The module is not changed.
std::vector<std::vector<std::string>> channel_dependency_groups(const torch::jit::Module& module);

}  // namespace shrink
