// What the rules of add, cat and hardswish share: the op, [a ReLU,] and the fake-quant after it
// become one quantized op with the fake-quant's parameters.
#pragma once

#include <vector>

namespace torch::jit {
struct Node;
struct Value;
}  // namespace torch::jit

namespace shrink::int8 {

class Lowering;

// `n` followed by [a ReLU, when `op_relu` is given] and a per-tensor fake-quant becomes
// `op(inputs..., scale, zero_point)` (or `op_relu(...)`) with the fake-quant's parameters, inserted
// before `n`. Returns false, having changed nothing, when no fake-quant follows.
bool fuse_output(Lowering& lowering, torch::jit::Node* n,
                 const std::vector<torch::jit::Value*>& inputs, const char* op,
                 const char* op_relu = nullptr);

}  // namespace shrink::int8
