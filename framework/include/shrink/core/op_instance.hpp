// One op instance of a model, as a config_list selects it: a module (`conv1`, `layer1.0.conv1`) or
// a functional call in some module's forward (the residual `add` of `layer1.0`). Torch-free, so
// that plans (config/) can be made against a model's ops without the graph layer.
#pragma once

#include <string>

namespace shrink {

struct OpInstance {
  std::string name;         // instance path: "conv1", "layer1.0.conv1", functional "layer1.0.add"
  std::string type;         // "Conv2d", "ReLU6", "BatchNorm2d"; functional: "add", "relu", "cat"
  bool functional = false;  // a call in some module's forward rather than a module of its own
  bool has_weight = false;
  bool has_bias = false;
};

}  // namespace shrink
