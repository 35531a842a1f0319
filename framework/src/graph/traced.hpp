// A model written by torch.jit.trace made to read as torch.jit.script would have written it
// (private to graph/).
#pragma once

#include <torch/csrc/jit/api/module.h>

namespace shrink::detail {

// Rewrites, in place, in the methods of `module` and all its submodules:
// - aten::_convolution (what tracing records for every convolution) that is not transposed into
//   aten::conv1d, conv2d or conv3d, the calls the int8 lowering, channel removal and MAC
//   counting know;
// - the `training` flag of a BatchNorm or Dropout module's call, which tracing records as the
//   constant of the mode the model was traced in (eval: BatchNorm never learns its statistics
//   and dropout never drops while training), into a read of the module's `training` attribute,
//   as the scripted modules do.
// A scripted model has neither and is left as it is.
void rewrite_traced(torch::jit::Module& module);

}  // namespace shrink::detail
