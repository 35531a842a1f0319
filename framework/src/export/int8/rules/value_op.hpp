// What the rules of ops that run on a quantized tensor as they are (pooling, ReLUs, reshapes)
// share: the op moved onto its input's twin, keeping the twin's quantization parameters.
#pragma once

namespace torch::jit {
struct Graph;
struct Node;
struct Value;
}  // namespace torch::jit

namespace shrink::int8 {

class Lowering;

// Whether the op leaves dim 1 of an NCHW tensor where it was (pooling, ReLU: a linear after it
// can still read the channels copy-free; see rules/linear.cpp) or moves it (reshapes).
enum class Channels { kKept, kMoved };

// `n` computed on `q` at n's place: the same call, or the out-of-place op of an in-place one
// (view becomes reshape); returns its output.
torch::jit::Value* same_op_on(torch::jit::Graph& graph, torch::jit::Node* n, torch::jit::Value* q);

// When `n`'s input 0 has a twin: the same call on the twin, whose result (same parameters) is the
// twin of `n`'s output, and `n` goes. In-place variants become out-of-place ones. Otherwise `n` is
// left as it is.
void lower_on_twin(Lowering& lowering, torch::jit::Node* n, Channels channels);

}  // namespace shrink::int8
