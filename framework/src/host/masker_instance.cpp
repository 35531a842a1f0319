#include <shrink/core/error.hpp>
#include <shrink/core/one_line_error.hpp>
#include <shrink/host/masker_instance.hpp>
#include <shrink/host/plugin_check.hpp>

#include "host/result_checks.hpp"
#include "host/tensor_handle.hpp"

#include <torch/torch.h>

#include <cmath>

namespace shrink {

using detail::make_error;
using detail::make_handle;
using detail::take_handle;
using detail::TensorHandle;

MaskerInstance::MaskerInstance(const AlgorithmInfo& algorithm, const Options& options)
    : algorithm_(&algorithm) {
  SHRINK_CHECK(algorithm.is_masker(), "algorithm '" << algorithm.name << "' is a "
                                                    << algorithm.kinds_text()
                                                    << ", not a weight masker or pruner");
  OptionsView view(options);
  shrink_instance instance{sizeof(shrink_instance), nullptr, 0};
  shrink_error error = make_error();
  SHRINK_CHECK(algorithm.descriptor->create(view.get(), &instance, &error) == SHRINK_STATUS_OK,
               "plugin '" << algorithm.name << "' rejected its options: " << error.message);
  handle_ = instance.handle;
  check_values_ = value_checks_by_default();
}

std::string MaskerInstance::where(const WrapperSpec& wrapper, const char* call) const {
  return algorithm_->display_name() + ", op " + wrapper.module_name + ": " + call;
}

void MaskerInstance::fail(const WrapperSpec& wrapper, const char* call,
                          const std::string& what) const {
  throw_one_line(where(wrapper, call) + " " + what);
}

void MaskerInstance::check_values_of(const WrapperSpec& wrapper, const char* call,
                                     const at::Tensor& t) const {
  if (!check_values_ || !t.defined()) return;
  const int64_t bad = detail::count_non_finite(t);
  if (bad > 0) {
    fail(wrapper, call,
         "returned " + std::to_string(bad) + " non-finite value(s) (NaN or inf) of " +
             std::to_string(t.numel()));
  }
}

MaskerInstance::~MaskerInstance() {
  if (handle_ != nullptr) algorithm_->descriptor->destroy(handle_);
}

namespace {

// The C view of a wrapper, borrowed for one call.
struct WrapperView {
  explicit WrapperView(const WrapperSpec& w)
      : config(w.config),
        weight(make_handle(w.weight.detach())),
        bias(w.bias.defined() ? make_handle(w.bias.detach()) : nullptr),
        weight_grad(w.weight_grad.defined() ? make_handle(w.weight_grad.detach()) : nullptr),
        output_grad_product(w.output_grad_product.defined()
                                ? make_handle(w.output_grad_product.detach())
                                : nullptr) {
    info.struct_size = sizeof(info);
    info.module_name = w.module_name.c_str();
    info.module_type = w.module_type.c_str();
    info.config = config.get();
    info.weight = weight.get();
    info.bias = bias.get();
    info.weight_grad = weight_grad.get();
    info.output_grad_product = output_grad_product.get();
  }
  OptionsView config;
  TensorHandle weight, bias, weight_grad, output_grad_product;
  shrink_wrapper_info info{};
};

}  // namespace

Masks MaskerInstance::calc_mask(double sparsity, const WrapperSpec& wrapper, int wrapper_idx) {
  SHRINK_CHECK(sparsity >= 0.0 && sparsity < 1.0, "sparsity for "
                                                      << wrapper.module_name << " is " << sparsity
                                                      << ", expected a value in [0, 1)");
  at::NoGradGuard no_grad;
  WrapperView view(wrapper);
  const shrink_wrapper_info& info = view.info;
  shrink_tensor* weight_mask = nullptr;
  shrink_tensor* bias_mask = nullptr;
  shrink_error error = make_error();
  shrink_status status = algorithm_->descriptor->masker->calc_mask(
      handle_, sparsity, &info, wrapper_idx, &weight_mask, &bias_mask, &error);
  Masks masks{take_handle(weight_mask), take_handle(bias_mask)};
  if (status != SHRINK_STATUS_OK)
    fail(wrapper, "calc_mask", std::string("failed: ") + error.message);
  if (!masks.weight_mask.defined() || masks.weight_mask.sizes() != wrapper.weight.sizes()) {
    fail(wrapper, "calc_mask",
         "returned a weight_mask of shape " +
             (masks.weight_mask.defined() ? detail::shape_text(masks.weight_mask) : "(none)") +
             ", expected the weight's " + detail::shape_text(wrapper.weight));
  }
  if (masks.bias_mask.defined() &&
      (!wrapper.bias.defined() || masks.bias_mask.sizes() != wrapper.bias.sizes())) {
    fail(wrapper, "calc_mask", "returned a bias_mask that does not fit the bias");
  }
  for (const at::Tensor* m : {&masks.weight_mask, &masks.bias_mask}) {
    if (m->defined() && !at::isFloatingType(m->scalar_type()) && m->scalar_type() != at::kBool) {
      fail(wrapper, "calc_mask",
           "returned a " + detail::dtype_name(m->scalar_type()) +
               " mask, expected a floating-point or bool one of 0s and 1s");
    }
    check_values_of(wrapper, "calc_mask", *m);
  }
  return masks;
}

namespace {

// The pruner table, or nullptr for a plain masker or a plugin whose descriptor predates it.
const shrink_pruner_api* pruner_api(const AlgorithmInfo& algorithm) {
  const auto* d = algorithm.descriptor;
  if (!algorithm.is_pruner() || !SHRINK_HAS_FIELD(d, shrink_algorithm_descriptor, pruner)) {
    return nullptr;
  }
  return d->pruner;
}

}  // namespace

at::Tensor MaskerInstance::importance(const WrapperSpec& wrapper, int wrapper_idx) {
  const auto* api = algorithm_->descriptor->masker;
  if (!SHRINK_HAS_FIELD(api, shrink_masker_api, importance) || api->importance == nullptr)
    return {};
  at::NoGradGuard no_grad;
  WrapperView view(wrapper);
  shrink_tensor* scores = nullptr;
  shrink_error error = make_error();
  const shrink_status status = api->importance(handle_, &view.info, wrapper_idx, &scores, &error);
  at::Tensor s = take_handle(scores);
  if (status != SHRINK_STATUS_OK)
    fail(wrapper, "importance", std::string("failed: ") + error.message);
  if (!s.defined()) return s;
  if (s.sizes() != wrapper.weight.sizes() &&
      !(s.dim() == 1 && s.size(0) == wrapper.weight.size(0))) {
    fail(wrapper, "importance",
         "returned shape " + detail::shape_text(s) + ", expected " +
             detail::shape_text(wrapper.weight) + " or [" + std::to_string(wrapper.weight.size(0)) +
             "]");
  }
  if (!at::isFloatingType(s.scalar_type())) {
    fail(wrapper, "importance",
         "returned " + detail::dtype_name(s.scalar_type()) + " scores, expected floating point");
  }
  check_values_of(wrapper, "importance", s);
  return s;
}

void MaskerInstance::update_epoch(int epoch) {
  const shrink_pruner_api* p = pruner_api(*algorithm_);
  if (p == nullptr || p->update_epoch == nullptr) return;
  shrink_error error = make_error();
  SHRINK_CHECK(p->update_epoch(handle_, epoch, &error) == SHRINK_STATUS_OK,
               algorithm_->display_name()
                   << ": update_epoch(" << epoch << ") failed: " << error.message);
}

void MaskerInstance::step() {
  const shrink_pruner_api* p = pruner_api(*algorithm_);
  if (p == nullptr || p->step == nullptr) return;
  shrink_error error = make_error();
  SHRINK_CHECK(p->step(handle_, &error) == SHRINK_STATUS_OK,
               algorithm_->display_name() << ": step failed: " << error.message);
}

void MaskerInstance::observe(const WrapperSpec& wrapper, int wrapper_idx) {
  const shrink_pruner_api* p = pruner_api(*algorithm_);
  if (p == nullptr || !SHRINK_HAS_FIELD(p, shrink_pruner_api, observe) || p->observe == nullptr)
    return;
  at::NoGradGuard no_grad;
  WrapperView view(wrapper);
  shrink_error error = make_error();
  if (p->observe(handle_, &view.info, wrapper_idx, &error) != SHRINK_STATUS_OK) {
    fail(wrapper, "observe", std::string("failed: ") + error.message);
  }
}

bool MaskerInstance::observes_outputs() {
  const shrink_pruner_api* p = pruner_api(*algorithm_);
  if (p == nullptr || !SHRINK_HAS_FIELD(p, shrink_pruner_api, observes_outputs) ||
      p->observes_outputs == nullptr) {
    return false;
  }
  int32_t out = 0;
  shrink_error error = make_error();
  SHRINK_CHECK(p->observes_outputs(handle_, &out, &error) == SHRINK_STATUS_OK,
               algorithm_->display_name() << ": observes_outputs failed: " << error.message);
  return out != 0;
}

double MaskerInstance::l1_penalty() {
  const shrink_pruner_api* p = pruner_api(*algorithm_);
  if (p == nullptr || !SHRINK_HAS_FIELD(p, shrink_pruner_api, l1_penalty) ||
      p->l1_penalty == nullptr) {
    return 0.0;
  }
  double coefficient = 0.0;
  shrink_error error = make_error();
  SHRINK_CHECK(p->l1_penalty(handle_, &coefficient, &error) == SHRINK_STATUS_OK,
               algorithm_->display_name() << ": l1_penalty failed: " << error.message);
  SHRINK_CHECK(std::isfinite(coefficient) && coefficient >= 0.0,
               algorithm_->display_name()
                   << ": l1_penalty returned " << coefficient << ", expected a finite value >= 0");
  return coefficient;
}

}  // namespace shrink
