#include <shrink/dist/gradient_reducer.hpp>

#include "dist/process_group.hpp"

#include <shrink/core/error.hpp>
#include <shrink/core/one_line_error.hpp>

#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>
#include <sstream>
#include <unordered_map>

namespace shrink {

struct GradientReducer::State {
  Communicator* communicator = nullptr;
  std::unique_ptr<c10d::Reducer> reducer;
  std::vector<std::string> names;  // of the reducer's parameters, in its order
};

namespace {

// c10d's Reducer says, in paragraphs written for DistributedDataParallel's users, that a
// parameter got no gradient in the last step; this says it in one line, with the parameters' names
// (its message gives their indices).
[[noreturn]] void throw_unused(const c10::Error& e, const std::vector<std::string>& names) {
  const std::string text = e.what_without_backtrace();
  const std::string marker = "did not receive grad for rank ";
  std::string which;
  const std::size_t at = text.find(marker);
  if (at != std::string::npos) {
    std::istringstream indices(text.substr(text.find(':', at) + 1));
    std::size_t i = 0;
    while (indices >> i && i < names.size()) which += (which.empty() ? "" : ", ") + names[i];
  }
  if (which.empty()) throw Error("the gradient reducer: " + first_line(text));
  throw Error("data-parallel training: " + which +
              " got no gradient in the last step; every trained parameter must take part in "
              "every step's loss on every rank");
}

}  // namespace

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
    const std::string name = i < names.size() ? names[i] : "parameter " + std::to_string(i);
    param_names[params.size()] = name;
    state_->names.push_back(name);
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
  try {
    state_->reducer->prepare_for_forward();
    // After the first step: the buckets in the order the gradients actually came (synchronized).
    state_->reducer->rebuild_buckets();
  } catch (const c10::Error& e) {
    throw_unused(e, state_->names);
  }
}

void GradientReducer::before_backward(const at::Tensor& loss) {
  if (!state_->reducer) return;
  try {
    state_->reducer->prepare_for_backward({loss});
  } catch (const c10::Error& e) {
    throw_unused(e, state_->names);
  }
}

}  // namespace shrink
