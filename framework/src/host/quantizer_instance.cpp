#include <shrink/core/error.hpp>
#include <shrink/core/one_line_error.hpp>
#include <shrink/host/plugin_check.hpp>
#include <shrink/host/quantizer_instance.hpp>

#include "host/result_checks.hpp"
#include "host/tensor_handle.hpp"

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <sstream>

namespace shrink {

using detail::make_error;
using detail::make_handle;
using detail::take_handle;
using detail::TensorHandle;

struct QuantizerInstance::Site {
  SiteSpec spec;
  std::vector<SiteState> state;
  void* plugin_site = nullptr;
  // Channels of the site's tensor (dim 0 of a weight, dim 1 of an activation), from its sample or
  // the latest call; 0 until known. What a per-channel scale must match.
  int64_t channels = 0;
  // While measuring: the float inputs of this batch's calls (kReference), the next one to compare
  // with, and sums of ref^2, (quantize(x) - ref)^2, x^2 and (quantize(x) - x)^2 over the calls.
  std::vector<at::Tensor> reference;
  std::size_t next_reference = 0;
  double signal = 0, noise = 0, local_signal = 0, local_noise = 0;
  // One handle per state tensor for the life of the site (the ABI's stable state handles), and
  // the tensor each was made for.
  std::vector<detail::TensorHandle> handles;
  std::vector<shrink_tensor*> raw;
  std::vector<c10::TensorImpl*> made_for;

  // The handles for this call. A state tensor replaced by a new one (not updated in place) gets
  // a new handle, made before the old one is released so that its address differs.
  shrink_tensor* const* state_handles() {
    handles.resize(state.size());
    raw.resize(state.size());
    made_for.resize(state.size(), nullptr);
    for (std::size_t i = 0; i < state.size(); ++i) {
      if (made_for[i] != state[i].value.unsafeGetTensorImpl() || !handles[i]) {
        detail::TensorHandle fresh = detail::make_handle(state[i].value.detach());
        handles[i].swap(fresh);
        raw[i] = handles[i].get();
        made_for[i] = state[i].value.unsafeGetTensorImpl();
      }
    }
    return raw.data();
  }
};

namespace {

// Collects the state a plugin declares in setup_site.
struct StateCollector {
  std::vector<SiteState> state;
};

}  // namespace
}  // namespace shrink

// The opaque builder of the ABI is the collector.
struct shrink_state_builder {
  shrink::StateCollector collector;
};

namespace shrink {
namespace {

shrink_status declare_state_v2(shrink_state_builder* builder, const char* name,
                               shrink_state_kind kind, shrink_state_flags flags,
                               const shrink_tensor* initial, shrink_error* error) {
  try {
    if (builder == nullptr || name == nullptr || initial == nullptr) {
      throw std::invalid_argument("declare: NULL builder, name or tensor");
    }
    if ((flags & ~shrink_state_flags{SHRINK_STATE_NO_WEIGHT_DECAY}) != 0) {
      throw std::invalid_argument(std::string("state '") + name + "': unknown flags " +
                                  std::to_string(flags));
    }
    if (kind != SHRINK_STATE_BUFFER && kind != SHRINK_STATE_PARAMETER) {
      throw std::invalid_argument(std::string("state '") + name + "': unknown kind " +
                                  std::to_string(kind));
    }
    for (const auto& s : builder->collector.state) {
      if (s.name == name)
        throw std::invalid_argument(std::string("state '") + name + "' declared twice");
    }
    SiteState s;
    s.name = name;
    s.learnable = kind == SHRINK_STATE_PARAMETER;
    s.weight_decay = (flags & SHRINK_STATE_NO_WEIGHT_DECAY) == 0;
    s.value = initial->tensor.clone();
    if (s.learnable) s.value.requires_grad_(true);
    builder->collector.state.push_back(std::move(s));
    return SHRINK_STATUS_OK;
  } catch (const std::exception& e) {
    std::snprintf(error->message, SHRINK_ERROR_MESSAGE_CAPACITY, "%s", e.what());
    return SHRINK_STATUS_INVALID_ARGUMENT;
  }
}

shrink_status declare_state(shrink_state_builder* builder, const char* name, shrink_state_kind kind,
                            const shrink_tensor* initial, shrink_error* error) {
  return declare_state_v2(builder, name, kind, 0, initial, error);
}

const shrink_state_declarer kDeclarer = {sizeof(shrink_state_declarer), &declare_state,
                                         &declare_state_v2};

// DLPack (as LibTorch 1.13 converts) gives size-1 dimensions stride 1, so a [N, 1, H, W] tensor
// came back from a plugin with strides that look channels-last to the next convolution, which then
// switched the rest of the network to channels-last. A result in the same memory order as `like`
// (strides differing only on size-1 dimensions) gets like's strides back, without a copy.
at::Tensor with_strides_of(const at::Tensor& y, const at::Tensor& like) {
  if (!y.defined() || y.sizes() != like.sizes() || y.strides() == like.strides()) return y;
  for (int64_t d = 0; d < y.dim(); ++d) {
    if (y.size(d) != 1 && y.stride(d) != like.stride(d)) return y;
  }
  at::Tensor out = at::empty({0}, y.options());
  out.set_(y.storage(), y.storage_offset(), like.sizes(), like.strides());
  return out;
}

// Autograd bridge: forward calls the plugin; backward calls its QuantGrad, or passes the gradient
// straight through when it has none.
class QuantizeFunction : public torch::autograd::Function<QuantizeFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor x,
                            QuantizerInstance* quantizer, int64_t site, at::TensorList params) {
    ctx->saved_data["quantizer"] = reinterpret_cast<int64_t>(quantizer);
    ctx->saved_data["site"] = site;
    ctx->saved_data["params"] = static_cast<int64_t>(params.size());
    if (quantizer->has_quant_grad()) ctx->save_for_backward({x});
    return quantizer->forward_raw(static_cast<int>(site), x);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* quantizer = reinterpret_cast<QuantizerInstance*>(ctx->saved_data["quantizer"].toInt());
    const int site = static_cast<int>(ctx->saved_data["site"].toInt());
    const int64_t n_params = ctx->saved_data["params"].toInt();
    torch::autograd::variable_list out = {grads[0], at::Tensor(), at::Tensor()};
    if (!quantizer->has_quant_grad()) {
      out.resize(3 + n_params);
      return out;
    }
    at::Tensor x = ctx->get_saved_variables()[0];
    std::vector<at::Tensor> plugin_grads = quantizer->backward_raw(site, x, grads[0]);
    out[0] = plugin_grads[0];
    // plugin_grads[1..] follow all state; keep the learnable ones, in order.
    const auto& state = quantizer->site_state(site);
    for (std::size_t i = 0; i < state.size(); ++i) {
      if (state[i].learnable) out.push_back(plugin_grads[1 + i]);
    }
    return out;
  }
};

// Live instances by id. Ids are never reused, so a stale graph fails loudly instead of calling
// the wrong instance.
std::mutex& instances_mutex() {
  static std::mutex m;
  return m;
}
std::vector<QuantizerInstance*>& instances() {
  static auto* list = new std::vector<QuantizerInstance*>();
  return *list;
}

}  // namespace

QuantizerInstance* QuantizerInstance::from_id(int64_t id) {
  std::lock_guard<std::mutex> lock(instances_mutex());
  if (id < 0 || id >= static_cast<int64_t>(instances().size())) return nullptr;
  return instances()[static_cast<std::size_t>(id)];
}

QuantizerInstance::QuantizerInstance(const AlgorithmInfo& algorithm, const Options& options)
    : algorithm_(&algorithm) {
  SHRINK_CHECK(algorithm.is_quantizer(), "algorithm '" << algorithm.name << "' is a "
                                                       << algorithm.kinds_text()
                                                       << ", not a quantizer");
  OptionsView view(options);
  shrink_instance instance{sizeof(shrink_instance), nullptr, 0};
  shrink_error error = make_error();
  shrink_status status = algorithm.descriptor->create(view.get(), &instance, &error);
  SHRINK_CHECK(status == SHRINK_STATUS_OK,
               "plugin '" << algorithm.name << "' rejected its options: " << error.message);
  handle_ = instance.handle;
  flags_ = instance.flags;
  check_values_ = value_checks_by_default();
  std::lock_guard<std::mutex> lock(instances_mutex());
  id_ = static_cast<int>(instances().size());
  instances().push_back(this);
}

QuantizerInstance::~QuantizerInstance() {
  {
    std::lock_guard<std::mutex> lock(instances_mutex());
    if (id_ >= 0) instances()[static_cast<std::size_t>(id_)] = nullptr;
  }
  const shrink_quantizer_api* api = algorithm_->descriptor->quantizer;
  for (auto& site : sites_) {
    if (site->plugin_site != nullptr && api->destroy_site != nullptr) {  // required field
      api->destroy_site(handle_, site->plugin_site);
    }
  }
  if (handle_ != nullptr) algorithm_->descriptor->destroy(handle_);
}

bool QuantizerInstance::any_dense_layout() const {
  return (flags_ & SHRINK_INSTANCE_ANY_DENSE_LAYOUT) != 0;
}

bool QuantizerInstance::has_quant_grad() const {
  const auto* d = algorithm_->descriptor;
  return (flags_ & SHRINK_INSTANCE_HAS_QUANT_GRAD) != 0 &&
         SHRINK_HAS_FIELD(d, shrink_algorithm_descriptor, quant_grad) && d->quant_grad != nullptr &&
         d->quant_grad->quant_backward != nullptr;
}

std::string QuantizerInstance::where(int site, const char* call) const {
  const SiteSpec& s = sites_.at(site)->spec;
  return algorithm_->display_name() + ", site " + s.module_name + "." + s.target + ": " + call;
}

void QuantizerInstance::fail(int site, const char* call, const std::string& what) const {
  throw_one_line(where(site, call) + " " + what);
}

void QuantizerInstance::check_result(int site, const char* call, const at::Tensor& y,
                                     const at::Tensor& x) const {
  if (!y.defined()) fail(site, call, "returned no tensor");
  if (y.sizes() != x.sizes()) {
    fail(site, call,
         "returned shape " + detail::shape_text(y) + ", expected " + detail::shape_text(x) +
             " (its input's)");
  }
  if (y.scalar_type() != x.scalar_type()) {
    fail(site, call,
         "returned " + detail::dtype_name(y.scalar_type()) + ", expected " +
             detail::dtype_name(x.scalar_type()) + " (its input's dtype)");
  }
  if (check_values_) {
    const int64_t bad = detail::count_non_finite(y);
    if (bad > 0) {
      fail(site, call,
           "returned " + std::to_string(bad) + " non-finite value(s) (NaN or inf) of " +
               std::to_string(y.numel()));
    }
  }
}

int QuantizerInstance::add_site(const SiteSpec& spec) {
  auto site = std::make_unique<Site>();
  site->spec = spec;
  OptionsView config(spec.config);
  TensorHandle sample = spec.sample.defined() ? make_handle(spec.sample.detach()) : nullptr;
  shrink_site_info info;
  info.struct_size = sizeof(info);
  info.module_name = spec.module_name.c_str();
  info.module_type = spec.module_type.c_str();
  info.target = spec.target.c_str();
  info.quant_type = static_cast<shrink_quant_type>(spec.quant_type);
  info.config = config.get();
  info.sample = sample.get();

  shrink_state_builder builder;
  shrink_error error = make_error();
  void* plugin_site = nullptr;
  shrink_status status = algorithm_->descriptor->quantizer->setup_site(
      handle_, &info, &kDeclarer, &builder, &plugin_site, &error);
  SHRINK_CHECK(status == SHRINK_STATUS_OK,
               algorithm_->display_name() << ", site " << spec.module_name << "." << spec.target
                                          << ": setup_site rejected it: " << error.message);
  site->plugin_site = plugin_site;
  if (spec.sample.defined() && spec.sample.dim() >= 1) site->channels = spec.sample.size(0);
  site->state = std::move(builder.collector.state);
  bool learnable = false;
  for (const auto& s : site->state) learnable = learnable || s.learnable;
  sites_.push_back(std::move(site));
  SHRINK_CHECK(!learnable || has_quant_grad(),
               algorithm_->display_name()
                   << " declares learnable state at " << spec.module_name << "." << spec.target
                   << " but gives no QuantGrad to compute its gradient");
  return static_cast<int>(sites_.size()) - 1;
}

const SiteSpec& QuantizerInstance::site_spec(int site) const { return sites_.at(site)->spec; }

std::vector<SiteState>& QuantizerInstance::site_state(int site) { return sites_.at(site)->state; }

at::Tensor QuantizerInstance::quantize(int site, const at::Tensor& x) {
  if (measuring_ == Measure::kReference) {
    sites_.at(site)->reference.push_back(x.detach().clone());
    return x;
  }
  std::vector<at::Tensor> params;
  for (const auto& s : sites_.at(site)->state) {
    if (s.learnable) params.push_back(s.value);
  }
  return QuantizeFunction::apply(x, this, static_cast<int64_t>(site), at::TensorList(params));
}

at::Tensor QuantizerInstance::forward_raw(int site, const at::Tensor& x) {
  at::NoGradGuard no_grad;
  Site& s = *sites_.at(site);
  const shrink_quantizer_api* api = algorithm_->descriptor->quantizer;
  auto call = s.spec.quant_type == QuantType::kWeight  ? api->quantize_weight
              : s.spec.quant_type == QuantType::kInput ? api->quantize_input
                                                       : api->quantize_output;
  const char* name = s.spec.quant_type == QuantType::kWeight  ? "quantize_weight"
                     : s.spec.quant_type == QuantType::kInput ? "quantize_input"
                                                              : "quantize_output";
  // Channels-last activations (what oneDNN's convolutions return) go as they are to a plugin that
  // takes any dense layout: a contiguous copy of them cost more than the quantization itself.
  TensorHandle input = make_handle(x.detach(), any_dense_layout());
  shrink_tensor* const* state = s.state_handles();
  detail::TrainingScope training(training_, calibrating_);
  shrink_tensor* out = nullptr;
  shrink_error error = make_error();
  shrink_status status = call(handle_, s.plugin_site, input.get(), state,
                              static_cast<uint32_t>(s.state.size()), &out, &error);
  if (status != SHRINK_STATUS_OK) fail(site, name, std::string("failed: ") + error.message);
  at::Tensor y = with_strides_of(take_handle(out), x);
  check_result(site, name, y, x);
  if (s.spec.quant_type != QuantType::kWeight && x.dim() >= 2) s.channels = x.size(1);
  if (measuring_ == Measure::kCompare) {
    const at::Tensor xd = x.detach().to(at::kDouble), yd = y.to(at::kDouble);
    s.local_signal += xd.pow(2).sum().item<double>();
    s.local_noise += (yd - xd).pow(2).sum().item<double>();
    if (s.next_reference < s.reference.size() &&
        s.reference[s.next_reference].sizes() == x.sizes()) {
      const at::Tensor ref = s.reference[s.next_reference].to(at::kDouble);
      s.signal += ref.pow(2).sum().item<double>();
      s.noise += (yd - ref).pow(2).sum().item<double>();
    }
    ++s.next_reference;
  }
  // An identity result shares memory with the input; autograd must not see an alias of it.
  if (y.data_ptr() == x.data_ptr()) y = y.clone();
  return y;
}

std::vector<at::Tensor> QuantizerInstance::backward_raw(int site, const at::Tensor& x,
                                                        const at::Tensor& grad) {
  at::NoGradGuard no_grad;
  Site& s = *sites_.at(site);
  const bool keep = any_dense_layout() && x.is_non_overlapping_and_dense();
  TensorHandle input = make_handle(x.detach(), keep);
  // grad_output in the layout of the tensor, as the ABI promises: exactly x's strides (empty_like
  // may choose others for size-1 dimensions).
  at::Tensor g = grad.detach();
  if (keep && g.strides() != x.strides()) {
    g = at::empty_strided(x.sizes(), x.strides(), x.options()).copy_(g);
  }
  TensorHandle grad_output = make_handle(g, keep);
  shrink_tensor* const* state = s.state_handles();
  std::vector<shrink_tensor*> state_grads(s.state.size(), nullptr);
  detail::TrainingScope training(training_, calibrating_);
  shrink_tensor* grad_input = nullptr;
  shrink_error error = make_error();
  shrink_status status = algorithm_->descriptor->quant_grad->quant_backward(
      handle_, s.plugin_site, static_cast<shrink_quant_type>(s.spec.quant_type), input.get(),
      grad_output.get(), state, static_cast<uint32_t>(s.state.size()), &grad_input,
      state_grads.data(), &error);
  std::vector<at::Tensor> out;
  out.push_back(with_strides_of(take_handle(grad_input), x));
  for (auto* g : state_grads) out.push_back(take_handle(g));
  if (status != SHRINK_STATUS_OK)
    fail(site, "quant_backward", std::string("failed: ") + error.message);
  check_result(site, "quant_backward", out[0], grad);
  for (std::size_t i = 0; i < s.state.size(); ++i) {
    const at::Tensor& g = out[1 + i];
    if (!g.defined()) continue;
    const std::string call = "quant_backward (the gradient of '" + s.state[i].name + "')";
    check_result(site, call.c_str(), g, s.state[i].value);
  }
  return out;
}

std::vector<at::Tensor> QuantizerInstance::parameters() const {
  std::vector<at::Tensor> params;
  for (const auto& site : sites_) {
    for (const auto& s : site->state) {
      if (s.learnable) params.push_back(s.value);
    }
  }
  return params;
}

std::vector<at::Tensor> QuantizerInstance::parameters(bool with_weight_decay) const {
  std::vector<at::Tensor> params;
  for (const auto& site : sites_) {
    for (const auto& s : site->state) {
      if (s.learnable && s.weight_decay == with_weight_decay) params.push_back(s.value);
    }
  }
  return params;
}

void QuantizerInstance::update_epoch(int epoch) {
  const shrink_quantizer_api* api = algorithm_->descriptor->quantizer;
  if (!SHRINK_HAS_FIELD(api, shrink_quantizer_api, update_epoch) || api->update_epoch == nullptr) {
    return;
  }
  shrink_error error = make_error();
  SHRINK_CHECK(api->update_epoch(handle_, epoch, &error) == SHRINK_STATUS_OK,
               algorithm_->display_name()
                   << ": update_epoch(" << epoch << ") failed: " << error.message);
}

void QuantizerInstance::set_measuring(Measure mode) {
  for (auto& s : sites_) {
    if (measuring_ == Measure::kOff && mode != Measure::kOff) {
      s->signal = s->noise = s->local_signal = s->local_noise = 0;
    }
    if (mode == Measure::kReference) s->reference.clear();
    if (mode == Measure::kOff) s->reference.clear();
    s->next_reference = 0;
  }
  measuring_ = mode;
}

namespace {
double decibels(double signal, double noise) {
  if (signal <= 0) return std::numeric_limits<double>::quiet_NaN();
  if (noise <= 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}
}  // namespace

double QuantizerInstance::sqnr_db(int site) const {
  const Site& s = *sites_.at(static_cast<std::size_t>(site));
  return decibels(s.signal, s.noise);
}

double QuantizerInstance::local_sqnr_db(int site) const {
  const Site& s = *sites_.at(static_cast<std::size_t>(site));
  return decibels(s.local_signal, s.local_noise);
}

void QuantizerInstance::end_calibration() {
  const shrink_quantizer_api* api = algorithm_->descriptor->quantizer;
  if (!SHRINK_HAS_FIELD(api, shrink_quantizer_api, end_calibration) ||
      api->end_calibration == nullptr) {
    return;
  }
  for (int site = 0; site < site_count(); ++site) {
    Site& s = *sites_[static_cast<std::size_t>(site)];
    shrink_error error = make_error();
    if (api->end_calibration(handle_, s.plugin_site, s.state_handles(),
                             static_cast<uint32_t>(s.state.size()), &error) != SHRINK_STATUS_OK) {
      fail(site, "end_calibration", std::string("failed: ") + error.message);
    }
  }
}

void QuantizerInstance::step() {
  const shrink_quantizer_api* api = algorithm_->descriptor->quantizer;
  if (!SHRINK_HAS_FIELD(api, shrink_quantizer_api, step) || api->step == nullptr) return;
  shrink_error error = make_error();
  SHRINK_CHECK(api->step(handle_, &error) == SHRINK_STATUS_OK,
               algorithm_->display_name() << ": step failed: " << error.message);
}

Calibration QuantizerInstance::export_site(int site) {
  Site& s = *sites_.at(site);
  const shrink_quantizer_api* api = algorithm_->descriptor->quantizer;
  SHRINK_CHECK(SHRINK_HAS_FIELD(api, shrink_quantizer_api, export_site) &&
                   api->export_site != nullptr && (algorithm_->capabilities & SHRINK_CAP_EXPORT),
               algorithm_->display_name() << " does not export calibration");
  shrink_tensor* const* state = s.state_handles();
  shrink_calibration c;
  std::memset(&c, 0, sizeof(c));
  c.struct_size = sizeof(c);
  shrink_error error = make_error();
  shrink_status status = api->export_site(handle_, s.plugin_site, state,
                                          static_cast<uint32_t>(s.state.size()), &c, &error);
  if (status != SHRINK_STATUS_OK)
    fail(site, "export_site", std::string("failed: ") + error.message);
  Calibration out;
  out.scale = take_handle(c.scale);
  out.zero_point = take_handle(c.zero_point);
  out.quant_bits = c.quant_bits;
  c.quant_dtype[sizeof(c.quant_dtype) - 1] = '\0';
  c.quant_scheme[sizeof(c.quant_scheme) - 1] = '\0';
  out.quant_dtype = c.quant_dtype;
  out.quant_scheme = c.quant_scheme;
  out.tracked_min = c.tracked_min;
  out.tracked_max = c.tracked_max;
  out.quant_min = c.quant_min;
  out.quant_max = c.quant_max;
  if (out.quant_min == 0 && out.quant_max == 0 && out.quant_bits >= 1 && out.quant_bits <= 32) {
    // A plugin that leaves the range unset (or predates the field): the dtype's full range.
    const int64_t levels = int64_t{1} << out.quant_bits;
    const bool is_unsigned = out.quant_dtype.rfind("uint", 0) == 0;
    out.quant_min = is_unsigned ? 0 : -levels / 2;
    out.quant_max = is_unsigned ? levels - 1 : levels / 2 - 1;
  }
  check_calibration(site, out);
  return out;
}

void QuantizerInstance::check_calibration(int site, const Calibration& c) const {
  const char* call = "export_site";
  if (c.quant_min >= c.quant_max) {
    fail(site, call,
         "gave an empty integer range [" + std::to_string(c.quant_min) + ", " +
             std::to_string(c.quant_max) + "]");
  }
  if (!c.scale.defined()) return;  // no quantization parameters: the site stays in float
  const int64_t channels = sites_.at(site)->channels;
  const int64_t n = c.scale.numel();
  if (!at::isFloatingType(c.scale.scalar_type())) {
    fail(site, call,
         "returned a " + detail::dtype_name(c.scale.scalar_type()) +
             " scale, expected float32 (or leave it undefined: the site stays float)");
  }
  if (n != 1 && (c.scale.dim() > 1 || (channels > 0 && n != channels))) {
    fail(site, call,
         "returned a scale of shape " + detail::shape_text(c.scale) +
             ", expected 1 element or one per channel (" + std::to_string(channels) + ")");
  }
  const at::Tensor scale = c.scale.to(at::kDouble);
  if (detail::count_non_finite(scale) > 0 || !(scale.min().item<double>() > 0)) {
    std::ostringstream values;
    values << scale.reshape({-1}).slice(0, 0, 8);
    fail(site, call,
         "returned a scale that is not positive and finite (" + values.str() +
             "); leave it undefined when the site has no range");
  }
  if (!c.zero_point.defined()) return;
  if (!at::isFloatingType(c.zero_point.scalar_type()) || c.zero_point.numel() != n) {
    fail(site, call,
         "returned a zero_point of " + detail::dtype_name(c.zero_point.scalar_type()) + " " +
             detail::shape_text(c.zero_point) + ", expected float32 with " + std::to_string(n) +
             " element(s), as the scale");
  }
  const at::Tensor zp = c.zero_point.to(at::kDouble).round();
  if (detail::count_non_finite(zp) > 0 ||
      zp.min().item<double>() < static_cast<double>(c.quant_min) ||
      zp.max().item<double>() > static_cast<double>(c.quant_max)) {
    fail(site, call,
         "returned a zero_point outside [" + std::to_string(c.quant_min) + ", " +
             std::to_string(c.quant_max) + "] or not finite");
  }
}

}  // namespace shrink
