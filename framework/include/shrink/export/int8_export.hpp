// Lowering a fake-quant TorchScript model (model_qat.pt, as `shrink run` exports it) to one that
// runs LibTorch's real int8 kernels (oneDNN engine): quantized::conv2d / conv2d_relu / linear /
// linear_relu / add / add_relu / cat, pooling and reshapes on quantized tensors, BatchNorm folded
// into the convolution before it. What has no int8 kernel stays float behind a dequantize, and
// the result lists it. Some kernels are made when the model loads (a submodule's __setstate__):
// small batches of an int8 linear as a 1x1 convolution, narrow convolutions before a max pool
// padded with zero channels; the result's notes say where.
#pragma once

#include <string>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace shrink {

struct Int8Export {
  int quantized_ops = 0;              // convolutions, linears, adds, ... now int8
  std::vector<std::string> int8_ops;  // which: "aten::conv2d (layer1.0.conv1)", in graph order
  std::vector<std::string>
      float_ops;                   // "aten::log_softmax (output): no int8 kernel; runs in float"
  std::vector<std::string> notes;  // e.g. weights re-quantized symmetric for oneDNN
};

// Reads `fake_quant_model` (a TorchScript file whose quantization is aten::fake_quantize_*
// nodes), writes the int8 model to `out_file`. Throws shrink::Error (one line naming the file and
// what is wrong) for a model it cannot lower: a fake-quant site of other than 8 bits, no
// quantized op at all.
Int8Export export_int8(const std::string& fake_quant_model, const std::string& out_file);

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
