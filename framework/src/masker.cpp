#include <shrink/error.hpp>
#include <shrink/masker.hpp>

#include "tensor_handle.hpp"

#include <torch/torch.h>

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
}

MaskerInstance::~MaskerInstance() {
  if (handle_ != nullptr) algorithm_->descriptor->destroy(handle_);
}

Masks MaskerInstance::calc_mask(double sparsity, const WrapperSpec& wrapper, int wrapper_idx) {
  SHRINK_CHECK(sparsity >= 0.0 && sparsity < 1.0,
               "sparsity for " << wrapper.module_name << " is " << sparsity
                               << ", expected a value in [0, 1)");
  at::NoGradGuard no_grad;
  OptionsView config(wrapper.config);
  TensorHandle weight = make_handle(wrapper.weight.detach());
  TensorHandle bias = wrapper.bias.defined() ? make_handle(wrapper.bias.detach()) : nullptr;
  shrink_wrapper_info info;
  info.struct_size = sizeof(info);
  info.module_name = wrapper.module_name.c_str();
  info.module_type = wrapper.module_type.c_str();
  info.config = config.get();
  info.weight = weight.get();
  info.bias = bias.get();
  shrink_tensor* weight_mask = nullptr;
  shrink_tensor* bias_mask = nullptr;
  shrink_error error = make_error();
  shrink_status status = algorithm_->descriptor->masker->calc_mask(
      handle_, sparsity, &info, wrapper_idx, &weight_mask, &bias_mask, &error);
  SHRINK_CHECK(status == SHRINK_STATUS_OK, "plugin '" << algorithm_->name << "': calc_mask on "
                                                      << wrapper.module_name
                                                      << " failed: " << error.message);
  Masks masks{take_handle(weight_mask), take_handle(bias_mask)};
  SHRINK_CHECK(masks.weight_mask.defined() && masks.weight_mask.sizes() == wrapper.weight.sizes(),
               "plugin '" << algorithm_->name << "': calc_mask on " << wrapper.module_name
                          << " returned a weight_mask whose shape differs from the weight's "
                          << wrapper.weight.sizes());
  SHRINK_CHECK(!masks.bias_mask.defined() ||
                   (wrapper.bias.defined() && masks.bias_mask.sizes() == wrapper.bias.sizes()),
               "plugin '" << algorithm_->name << "': calc_mask on " << wrapper.module_name
                          << " returned a bias_mask that does not fit the bias");
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

bool MaskerInstance::one_shot() const {
  const shrink_pruner_api* p = pruner_api(*algorithm_);
  return p == nullptr || p->one_shot != 0;
}

void MaskerInstance::update_epoch(int epoch) {
  const shrink_pruner_api* p = pruner_api(*algorithm_);
  if (p == nullptr || p->update_epoch == nullptr) return;
  shrink_error error = make_error();
  SHRINK_CHECK(p->update_epoch(handle_, epoch, &error) == SHRINK_STATUS_OK,
               "plugin '" << algorithm_->name << "': update_epoch(" << epoch
                          << ") failed: " << error.message);
}

void MaskerInstance::step() {
  const shrink_pruner_api* p = pruner_api(*algorithm_);
  if (p == nullptr || p->step == nullptr) return;
  shrink_error error = make_error();
  SHRINK_CHECK(p->step(handle_, &error) == SHRINK_STATUS_OK,
               "plugin '" << algorithm_->name << "': step failed: " << error.message);
}

}  // namespace shrink
