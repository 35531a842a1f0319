// A net whose convolution's output goes through a sigmoid, which maps a removed channel's zeros
// to 0.5: channel removal cannot follow it. Shared by the removal's own test and the plan's dry
// run of it.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

namespace shrink::test {

// conv (Conv2d, 1 -> 4 channels, 3x3) -> sigmoid -> average pool -> fc (Linear, 4 -> classes).
inline torch::jit::Module conv_sigmoid_net(int64_t classes) {
  torch::jit::Module conv("Conv2d");
  conv.register_parameter("weight", torch::randn({4, 1, 3, 3}), false);
  conv.register_parameter("bias", torch::randn({4}), false);
  conv.define("def forward(self, x):\n  return torch.conv2d(x, self.weight, self.bias)\n");
  torch::jit::Module fc("Linear");
  fc.register_parameter("weight", torch::randn({classes, 4}), false);
  fc.register_parameter("bias", torch::randn({classes}), false);
  fc.define("def forward(self, x):\n  return torch.linear(x, self.weight, self.bias)\n");
  torch::jit::Module root("Net");
  root.register_module("conv", conv);
  root.register_module("fc", fc);
  root.define(
      "def forward(self, x):\n"
      "  y = torch.sigmoid(self.conv.forward(x))\n"
      "  return self.fc.forward(torch.flatten(torch.adaptive_avg_pool2d(y, [1, 1]), 1))\n");
  return root;
}

}  // namespace shrink::test
