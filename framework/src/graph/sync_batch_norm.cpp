#include <shrink/dist/communicator.hpp>
#include <shrink/graph/sync_batch_norm.hpp>

#include "graph/graph_utils.hpp"

#include <torch/torch.h>

#include <vector>

namespace shrink {
namespace {

// Every dimension but the channels' (1).
std::vector<int64_t> reduced_dims(const at::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

// [C] -> a shape that broadcasts over x's channel dimension.
at::Tensor per_channel(const at::Tensor& v, const at::Tensor& x) {
  std::vector<int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[1] = -1;
  return v.reshape(shape);
}

struct SyncBatchNorm : torch::autograd::Function<SyncBatchNorm> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& weight, const at::Tensor& bias,
                            at::Tensor running_mean, at::Tensor running_var, double momentum,
                            double eps) {
    const auto dims = reduced_dims(x);
    const int64_t channels = x.size(1);
    // Summed in float64 without a float64 copy of x.
    at::Tensor sums =
        at::cat({x.sum(dims, false, at::kDouble), (x * x).sum(dims, false, at::kDouble),
                 at::full({1}, static_cast<double>(x.numel() / channels), at::kDouble)});
    current_communicator().all_reduce(sums, ReduceOp::kSum, "synchronized BatchNorm");
    const double n = sums[2 * channels].item<double>();
    const at::Tensor mean = sums.narrow(0, 0, channels) / n;
    const at::Tensor var = (sums.narrow(0, channels, channels) / n - mean * mean).clamp_min(0);
    const at::Tensor invstd = (var + eps).rsqrt();
    if (running_mean.defined()) {
      torch::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
      const at::Tensor unbiased = n > 1 ? var * (n / (n - 1)) : var;
      running_var.mul_(1 - momentum).add_(unbiased.to(running_var.scalar_type()), momentum);
    }
    const at::Tensor mean_f = mean.to(x.scalar_type()), invstd_f = invstd.to(x.scalar_type());
    at::Tensor y = (x - per_channel(mean_f, x)) * per_channel(invstd_f, x);
    ctx->save_for_backward({x, weight, mean_f, invstd_f});
    ctx->saved_data["n"] = n;
    if (weight.defined()) y = y * per_channel(weight, x);
    if (bias.defined()) y = y + per_channel(bias, x);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3];
    const at::Tensor& dy = grads.at(0);
    const double n = ctx->saved_data["n"].toDouble();
    const auto dims = reduced_dims(x);
    const int64_t channels = x.size(1);
    const at::Tensor xhat = (x - per_channel(mean, x)) * per_channel(invstd, x);
    const at::Tensor sum_dy = dy.sum(dims), sum_dy_xhat = (dy * xhat).sum(dims);
    at::Tensor global = at::cat({sum_dy, sum_dy_xhat}).to(at::kDouble);
    current_communicator().all_reduce(global, ReduceOp::kSum, "synchronized BatchNorm's backward");
    const at::Tensor g_dy = (global.narrow(0, 0, channels) / n).to(x.scalar_type());
    const at::Tensor g_dy_xhat = (global.narrow(0, channels, channels) / n).to(x.scalar_type());
    at::Tensor scale = invstd;
    if (weight.defined()) scale = scale * weight;
    const at::Tensor dx =
        (dy - per_channel(g_dy, x) - xhat * per_channel(g_dy_xhat, x)) * per_channel(scale, x);
    // This rank's share: the gradient reducer averages them over the ranks.
    at::Tensor dweight = weight.defined() ? sum_dy_xhat : at::Tensor();
    at::Tensor dbias = sum_dy;
    return {dx, dweight, dbias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor sync_batch_norm_op(const at::Tensor& input, const c10::optional<at::Tensor>& weight,
                              const c10::optional<at::Tensor>& bias,
                              const c10::optional<at::Tensor>& running_mean,
                              const c10::optional<at::Tensor>& running_var, bool training,
                              double momentum, double eps, bool cudnn_enabled) {
  if (!training || !current_communicator().active() || input.dim() < 2) {
    return at::batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps,
                          cudnn_enabled);
  }
  return SyncBatchNorm::apply(input, weight.value_or(at::Tensor()), bias.value_or(at::Tensor()),
                              running_mean.value_or(at::Tensor()),
                              running_var.value_or(at::Tensor()), momentum, eps);
}

}  // namespace
}  // namespace shrink

TORCH_LIBRARY_FRAGMENT(shrink, m) {
  m.def(torch::schema(
      "shrink::sync_batch_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, "
      "Tensor? running_var, bool training, float momentum, float eps, bool cudnn_enabled) -> "
      "Tensor",
      c10::AliasAnalysisKind::CONSERVATIVE));
}
TORCH_LIBRARY_IMPL(shrink, CompositeImplicitAutograd, m) {
  m.impl("sync_batch_norm", &shrink::sync_batch_norm_op);
}

namespace shrink {

torch::jit::Module with_sync_batch_norm(const torch::jit::Module& module, int* count) {
  // A clone's methods are new (the original's compiled plans stay as they are); its tensors are
  // the same.
  torch::jit::Module clone = module.clone(/*inplace=*/true);
  static const c10::Symbol kBatchNorm = detail::sym("aten::batch_norm");
  static const c10::Symbol kSync = detail::sym("shrink::sync_batch_norm");
  // Inlined: a BatchNorm's batch_norm call lies in functional.batch_norm, a function its
  // module's forward calls.
  const std::shared_ptr<torch::jit::Graph> graph = clone.get_method("forward").graph();
  detail::inline_calls(*graph);
  int rewritten = 0;
  for (torch::jit::Node* node : detail::all_nodes(graph->block())) {
    if (node->kind() != kBatchNorm) continue;
    torch::jit::WithInsertPoint guard(node);
    torch::jit::Node* sync = graph->insertNode(graph->create(kSync, node->inputs(), 1));
    sync->output()->setType(node->output()->type());
    node->output()->replaceAllUsesWith(sync->output());
    node->destroy();
    ++rewritten;
  }
  if (count != nullptr) *count = rewritten;
  return clone;
}

}  // namespace shrink
