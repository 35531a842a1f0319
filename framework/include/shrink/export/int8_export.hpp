// Lowering a fake-quant TorchScript model (model_qat.pt, as `shrink run` exports it) to one that
// runs LibTorch's real int8 kernels (oneDNN engine): quantized::conv2d / conv2d_relu / linear /
// linear_relu / add / add_relu / cat, pooling and reshapes on quantized tensors, BatchNorm folded
// into the convolution before it. What has no int8 kernel stays float behind a dequantize, and
// the result lists it. Some kernels are made when the model loads (a submodule's __setstate__):
// small batches of an int8 linear as a 1x1 convolution, narrow convolutions before a max pool
// padded with zero channels; the result's notes say where.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace shrink {

// Int8 ops joined by int8 values, with no float op between them: what runs int8 or float as one.
struct Int8Region {
  std::vector<std::string> ops;  // "aten::conv2d (stem)", in graph order
  bool int8 = true;              // false: left float, which ran faster here
  double gain = 0;  // its float version's time over its int8 version's, at the batch size timed
                    // where that is smallest; 0 when not timed (a model's only region: the
                    // whole model's check decides)
};

struct Int8Export {
  int quantized_ops = 0;              // convolutions, linears, adds, ... now int8
  std::vector<std::string> int8_ops;  // which: "aten::conv2d (layer1.0.conv1)", in graph order
  std::vector<std::string>
      float_ops;                   // "aten::log_softmax (output): no int8 kernel; runs in float"
  std::vector<std::string> notes;  // e.g. weights re-quantized symmetric for oneDNN
  std::vector<Int8Region> regions;
  // With timing: the int8 model's speed-up over the best fp32 at the batch size where it is
  // smallest, and whether it was written (not when it is slower); 0 and true without.
  double speedup = 0;
  bool written = true;
};

// What export_int8 times on this machine: the float model to beat (as loaded, and frozen +
// optimize_for_inference), one sample's shape and the batch sizes, one thread.
struct Int8Timing {
  std::string fp32_model;
  std::vector<int64_t> sample_shape;
  std::vector<int64_t> batches;
};

// Reads `fake_quant_model` (a TorchScript file whose quantization is aten::fake_quantize_*
// nodes), writes the int8 model to `out_file`. Throws shrink::Error (one line naming the file and
// what is wrong) for a model it cannot lower: a fake-quant site of other than 8 bits, no
// quantized op at all.
//
// With `timing`, int8 only where it pays, at every batch size timed: each region (when there are
// several) is timed against the same model with that region left float (its sites fake-quants),
// and left float where int8 is slower at some batch size, in graph order; then the whole model
// against the best fp32, and when it is slower at some batch size (below 0.97x, the medians'
// spread) nothing is written (result.written false) and `out_file` stays as it was.
Int8Export export_int8(const std::string& fake_quant_model, const std::string& out_file,
                       const Int8Timing* timing = nullptr);

// Reads a float TorchScript model, writes it frozen for inference with each BatchNorm that follows
// a convolution folded into it (weight * k, (bias - mean) * k + beta, k = gamma / sqrt(var + eps):
// the arithmetic export_int8 uses). Returns how many were folded.
int fold_batchnorm(const std::string& model, const std::string& out_file);

// Whether `module`'s forward runs any int8 kernel (a quantized:: op): what a model from export_int8
// does and a float model does not.
bool runs_int8_kernels(const torch::jit::Module& module);

// Selects LibTorch's oneDNN quantized engine (what int8 models from export_int8 run on).
void use_int8_engine();

}  // namespace shrink
