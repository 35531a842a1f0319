#include <shrink/dist/gradient_reducer.hpp>

#include "dist/process_group.hpp"

#include <shrink/core/error.hpp>

#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>
#include <unordered_map>

namespace shrink {

struct GradientReducer::State {
  Communicator* communicator = nullptr;
  std::unique_ptr<c10d::Reducer> reducer;
};

GradientReducer::GradientReducer(Communicator& communicator,
                                 const std::vector<at::Tensor>& parameters,
                                 const std::vector<std::string>& names)
    : state_(std::make_unique<State>()) {
  state_->communicator = &communicator;
  if (!communicator.active()) return;
  std::vector<at::Tensor> params;
  std::unordered_map<size_t, std::string> param_names;
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    if (!parameters[i].requires_grad()) continue;
    if (i < names.size()) param_names[params.size()] = names[i];
    params.push_back(parameters[i]);
  }
  if (params.empty()) return;
  const std::vector<bool> dense(params.size(), false);
  const int64_t cap = c10d::kDefaultBucketBytesCap;
  // As DistributedDataParallel: buckets by size in the parameters' order, then reversed, since
  // the backward produces the last layers' gradients first.
  auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
      params, {static_cast<size_t>(c10d::kDefaultFirstBucketBytes), static_cast<size_t>(cap)},
      dense, {}, c10::nullopt);
  std::reverse(buckets.begin(), buckets.end());
  std::reverse(limits.begin(), limits.end());
  try {
    state_->reducer = std::make_unique<c10d::Reducer>(
        params, std::move(buckets), std::move(limits), communicator.impl().group, dense, cap,
        /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false, std::move(param_names),
        c10d::kDefaultFirstBucketBytes);
  } catch (const c10::Error& e) {
    throw Error(std::string("the gradient reducer: ") + e.what_without_backtrace());
  }
}

GradientReducer::~GradientReducer() = default;

void GradientReducer::before_forward() {
  if (!state_->reducer) return;
  state_->reducer->prepare_for_forward();
  // After the first step: the buckets in the order the gradients actually came (synchronized).
  state_->reducer->rebuild_buckets();
}

void GradientReducer::before_backward(const at::Tensor& loss) {
  if (state_->reducer) state_->reducer->prepare_for_backward({loss});
}

}  // namespace shrink
