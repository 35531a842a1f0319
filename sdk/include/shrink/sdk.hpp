// Shrink C++ SDK: the face of the plugin ABI that plugin authors see.
//
// Subclass shrink::Quantizer (with an optional shrink::QuantGrad), shrink::WeightMasker,
// shrink::Pruner (NNI's method names) or shrink::Dataset (a data source, ABI 1.6), then register
// them with one SHRINK_PLUGIN block:
//
//     class YourQuantizer : public shrink::Quantizer {
//      public:
//       using Quantizer::Quantizer;
//       torch::Tensor quantize_weight(torch::Tensor weight, const shrink::Config& config,
//                                     shrink::Site& site) override { ... }
//     };
//     SHRINK_PLUGIN("your_plugin", "1.0.0") {
//       plugin.quantizer<YourQuantizer>("your_quantizer", "What it does", shrink::kTraining);
//     }
//
// This header fills the C tables of <shrink/plugin_api.h> from those classes, converts tensors
// zero-copy through DLPack and turns every exception into a status with its message, so nothing
// but C types crosses the boundary. It is header-only; a plugin links LibTorch and nothing of
// Shrink's.
//
// Contract for implementers:
//  - quantize_* and quant_backward run under torch::NoGradGuard; the host owns autograd.
//  - quantize_* return a tensor of their input's shape and dtype (float32 in, float32 out). The
//    host checks shape and dtype after every call, and finite values in `shrink check`, before
//    training and under `shrink run --check-plugins`; an exception thrown here reaches the user as
//    one line naming the plugin, the site and the call.
//  - State tensors declared in setup_site are shared with the host: update buffers in place
//    (copy_, mul_, ...). Assigning a new tensor to a state slot does not reach the host.
//    Parameters are trained by the experiment's optimizer, weight decay included, unless declared
//    with kNoWeightDecay (ABI 1.5).
//  - export_site is called for every site at export (see Quantizer::export_site).
//  - Per-site config keys beyond the framework's are declared at registration
//    (`.site_keys({"quant_start_step"})`, ABI 1.5); others are refused before anything runs.
//  - One instance is called from one thread at a time, except Dataset::get, which the loader's
//    worker threads call at once: keep it free of unguarded shared state.
#pragma once

#include <shrink/plugin_api.h>
#include <shrink/quant_type.hpp>
#include <shrink/results.hpp>

#include <ATen/DLConvertor.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef SHRINK_STRINGIFY
#define SHRINK_STRINGIFY_(x) #x
#define SHRINK_STRINGIFY(x) SHRINK_STRINGIFY_(x)
#endif

namespace shrink {

// Capability flags, as in the ABI.
constexpr shrink_capabilities kCalibration = SHRINK_CAP_CALIBRATION;
constexpr shrink_capabilities kTraining = SHRINK_CAP_TRAINING;
constexpr shrink_capabilities kExport = SHRINK_CAP_EXPORT;
constexpr shrink_capabilities kQuantGrad =
    SHRINK_CAP_QUANT_GRAD;  // declare when setting quant_grad

// Flags of Site::add_parameter (ABI 1.5): the optimizer trains the parameter without weight decay.
constexpr shrink_state_flags kNoWeightDecay = SHRINK_STATE_NO_WEIGHT_DECAY;

// Thrown by plugin code for bad options or configs; reported with SHRINK_STATUS_INVALID_ARGUMENT.
class InvalidArgument : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// Thrown for something the algorithm cannot do; reported with SHRINK_STATUS_UNSUPPORTED.
class Unsupported : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A read-only view of an options or config mapping (flattened keys, YAML scalar text values).
class Config {
 public:
  Config() = default;
  explicit Config(const shrink_options* options) {
    if (options == nullptr) return;
    for (uint32_t i = 0; i < options->count; ++i) {
      values_[options->entries[i].key] = options->entries[i].value;
    }
    if (SHRINK_HAS_FIELD(options, shrink_options, text) && options->text != nullptr) {
      text_ = options->text;
    }
  }

  bool has(const std::string& key) const { return values_.count(key) != 0; }
  const std::map<std::string, std::string>& entries() const { return values_; }
  const std::string& text() const { return text_; }

  std::string get(const std::string& key, const std::string& fallback) const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  int64_t get_int(const std::string& key, int64_t fallback) const {
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    try {
      std::size_t used = 0;
      int64_t v = std::stoll(it->second, &used);
      if (used == it->second.size()) return v;
    } catch (const std::exception&) {
    }
    throw InvalidArgument("option '" + key + "' is '" + it->second + "', expected an integer");
  }
  double get_double(const std::string& key, double fallback) const {
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    try {
      std::size_t used = 0;
      double v = std::stod(it->second, &used);
      if (used == it->second.size()) return v;
    } catch (const std::exception&) {
    }
    throw InvalidArgument("option '" + key + "' is '" + it->second + "', expected a number");
  }
  bool get_bool(const std::string& key, bool fallback) const {
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    const std::string& v = it->second;
    if (v == "true" || v == "True" || v == "1" || v == "yes") return true;
    if (v == "false" || v == "False" || v == "0" || v == "no") return false;
    throw InvalidArgument("option '" + key + "' is '" + v + "', expected true or false");
  }
  // Rejects keys outside `allowed`, naming the key and the allowed set.
  void require_known_keys(const std::vector<std::string>& allowed) const {
    for (const auto& kv : values_) {
      std::string head = kv.first.substr(0, kv.first.find('.'));
      bool ok = false;
      for (const auto& a : allowed) ok = ok || a == head;
      if (!ok) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        throw InvalidArgument("unknown key '" + kv.first + "' (allowed: " + list + ")");
      }
    }
  }

 private:
  std::map<std::string, std::string> values_;
  std::string text_;
};

namespace detail {

inline const shrink_host_api*& host_slot() {
  static const shrink_host_api* host = nullptr;
  return host;
}
inline std::string& plugin_name_slot() {
  static std::string name;
  return name;
}

inline void throw_if_failed(shrink_status status, const shrink_error& error) {
  if (status != SHRINK_STATUS_OK) throw std::runtime_error(error.message);
}

inline shrink_error make_error() {
  shrink_error error;
  error.struct_size = sizeof(shrink_error);
  error.message[0] = '\0';
  return error;
}

// Borrowed host handle -> tensor sharing its memory.
inline torch::Tensor from_handle(const shrink_tensor* handle) {
  if (handle == nullptr) return torch::Tensor();
  shrink_error error = make_error();
  void* dl = nullptr;
  throw_if_failed(host_slot()->tensor_to_dlpack(handle, &dl, &error), error);
  return at::fromDLPack(static_cast<DLManagedTensor*>(dl));
}

// Tensor -> new host handle (a new reference the host releases).
inline shrink_tensor* to_handle(const torch::Tensor& tensor) {
  if (!tensor.defined()) return nullptr;
  shrink_error error = make_error();
  shrink_tensor* out = nullptr;
  // A dense strided result (channels-last, say) keeps its layout; the host accepts it as it is.
  DLManagedTensor* dl =
      at::toDLPack(tensor.is_non_overlapping_and_dense() ? tensor : tensor.contiguous());
  throw_if_failed(host_slot()->tensor_from_dlpack(dl, &out, &error), error);
  return out;
}

inline void write_error(shrink_error* error, const char* message) {
  if (error == nullptr) return;
  std::snprintf(error->message, SHRINK_ERROR_MESSAGE_CAPACITY, "%s", message);
}

// Runs `body`, turning every exception into a status and a message.
template <typename Body>
shrink_status guarded(shrink_error* error, Body&& body) noexcept {
  try {
    body();
    return SHRINK_STATUS_OK;
  } catch (const InvalidArgument& e) {
    write_error(error, e.what());
    return SHRINK_STATUS_INVALID_ARGUMENT;
  } catch (const Unsupported& e) {
    write_error(error, e.what());
    return SHRINK_STATUS_UNSUPPORTED;
  } catch (const std::bad_alloc&) {
    write_error(error, "out of memory");
    return SHRINK_STATUS_OUT_OF_MEMORY;
  } catch (const c10::Error& e) {
    write_error(error, e.what_without_backtrace());
    return SHRINK_STATUS_ERROR;
  } catch (const std::exception& e) {
    write_error(error, e.what());
    return SHRINK_STATUS_ERROR;
  } catch (...) {
    write_error(error, "unknown exception");
    return SHRINK_STATUS_ERROR;
  }
}

class SiteAccess;

// True when T declares a `kOneShot` member (the SDK's name before ABI 1.5).
template <typename T, typename = void>
struct declares_one_shot : std::false_type {};
template <typename T>
struct declares_one_shot<T, std::void_t<decltype(T::kOneShot)>> : std::true_type {};

}  // namespace detail

// Logs through the host's logger, prefixed with the plugin's name.
inline void log(shrink_log_level level, const std::string& message) {
  const shrink_host_api* host = detail::host_slot();
  if (host != nullptr && host->log != nullptr) {
    host->log(level, detail::plugin_name_slot().c_str(), message.c_str());
  }
}
// True while the current quantize call belongs to a training forward (NNI's `module.training`).
inline bool is_training() {
  const shrink_host_api* host = detail::host_slot();
  return host != nullptr && SHRINK_HAS_FIELD(host, shrink_host_api, is_training) &&
         host->is_training != nullptr && host->is_training() != 0;
}

// True while the current quantize call belongs to a calibration forward (post-training
// statistics; the model is in eval mode). Hosts before ABI 1.2 never calibrate.
inline bool is_calibrating() {
  const shrink_host_api* host = detail::host_slot();
  return host != nullptr && SHRINK_HAS_FIELD(host, shrink_host_api, is_calibrating) &&
         host->is_calibrating != nullptr && host->is_calibrating() != 0;
}

// The ranks of a distributed run (ABI 1.7). Each rank sees its own share of the data: statistics
// gathered from it are combined with all_reduce before they decide anything, so that every rank
// holds the same state (the host checks it at each epoch end). Alone, in rank 0's own work
// (exports), or on a host before 1.7: world_size() is 1 and the calls change nothing.
enum class Reduce {
  kSum = SHRINK_REDUCE_SUM,
  kMin = SHRINK_REDUCE_MIN,
  kMax = SHRINK_REDUCE_MAX,
  kMean = SHRINK_REDUCE_MEAN
};

inline int world_size() {
  const shrink_host_api* host = detail::host_slot();
  if (host == nullptr || !SHRINK_HAS_FIELD(host, shrink_host_api, broadcast)) return 1;
  return host->world_size();
}

inline int rank() {
  const shrink_host_api* host = detail::host_slot();
  if (host == nullptr || !SHRINK_HAS_FIELD(host, shrink_host_api, broadcast)) return 0;
  return host->rank();
}

namespace detail {
// Runs a host collective on `t` in place (through a handle sharing its memory).
template <typename Call>
void collective(torch::Tensor& t, Call&& call) {
  if (world_size() <= 1) return;
  torch::Tensor dense = t.is_contiguous() ? t : t.contiguous();
  shrink_tensor* handle = to_handle(dense);
  shrink_error error = make_error();
  const shrink_status status = call(host_slot(), handle, &error);
  host_slot()->tensor_release(handle);
  throw_if_failed(status, error);
  if (!dense.is_same(t)) t.copy_(dense);
}
}  // namespace detail

// In place over every rank: the sum, min, max or mean (float tensors) of `t` (float32, float64 or
// int64).
inline void all_reduce(torch::Tensor& t, Reduce op) {
  detail::collective(t, [op](const shrink_host_api* host, shrink_tensor* h, shrink_error* e) {
    return host->all_reduce(h, static_cast<int32_t>(op), e);
  });
}

// Rank `root`'s values of `t` on every rank.
inline void broadcast(torch::Tensor& t, int root = 0) {
  detail::collective(t, [root](const shrink_host_api* host, shrink_tensor* h, shrink_error* e) {
    return host->broadcast(h, root, e);
  });
}

inline void log_info(const std::string& message) { log(SHRINK_LOG_INFO, message); }
inline void log_warn(const std::string& message) { log(SHRINK_LOG_WARN, message); }
inline void log_debug(const std::string& message) { log(SHRINK_LOG_DEBUG, message); }

// One quantization site: a (module instance, target) pair with its config and declared state.
class Site {
 public:
  Site(const shrink_site_info& info)
      : module_name_(info.module_name),
        module_type_(info.module_type),
        target_(info.target),
        quant_type_(static_cast<QuantType>(info.quant_type)),
        config_(info.config) {}

  const std::string& module_name() const { return module_name_; }
  const std::string& module_type() const { return module_type_; }
  const std::string& target() const { return target_; }
  QuantType quant_type() const { return quant_type_; }
  const Config& config() const { return config_; }
  // In setup_site only: the current tensor of a weight or bias site (undefined otherwise), e.g. to
  // size per-channel state.
  const torch::Tensor& sample() const { return sample_; }

  // In setup_site only: declare a buffer (saved, not trained) or a parameter (trained by the
  // experiment's optimizer, with its weight decay unless `flags` has kNoWeightDecay: a clipping
  // bound such as PACT's alpha would otherwise shrink towards zero). Later calls see them through
  // state(name) in declaration order.
  void add_buffer(const std::string& name, const torch::Tensor& initial) {
    declare(name, SHRINK_STATE_BUFFER, 0, initial);
  }
  void add_parameter(const std::string& name, const torch::Tensor& initial,
                     shrink_state_flags flags = 0) {
    declare(name, SHRINK_STATE_PARAMETER, flags, initial);
  }

  // The current value of a declared state tensor (shares memory with the host's copy).
  torch::Tensor& state(const std::string& name) {
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) return values_.at(i);
    }
    throw std::runtime_error("site " + module_name_ + "." + target_ + " has no state named '" +
                             name + "'");
  }

  // In quant_backward only: the gradient of a declared parameter.
  void set_grad(const std::string& name, const torch::Tensor& grad) {
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) {
        grads_.at(i) = grad;
        return;
      }
    }
    throw std::runtime_error("site " + module_name_ + "." + target_ + " has no parameter named '" +
                             name + "'");
  }

 private:
  friend class detail::SiteAccess;

  void declare(const std::string& name, shrink_state_kind kind, shrink_state_flags flags,
               const torch::Tensor& initial) {
    if (declarer_ == nullptr) {
      throw std::runtime_error("state '" + name + "' declared outside setup_site");
    }
    const bool has_v2 = SHRINK_HAS_FIELD(declarer_, shrink_state_declarer, declare_v2) &&
                        declarer_->declare_v2 != nullptr;
    if (flags != 0 && !has_v2) {
      log(SHRINK_LOG_WARN, "this host predates ABI 1.5: parameter '" + name + "' of " +
                               module_name_ + "." + target_ + " gets weight decay");
    }
    shrink_error error = detail::make_error();
    shrink_tensor* handle = detail::to_handle(initial.detach().clone());
    shrink_status status =
        has_v2 ? declarer_->declare_v2(builder_, name.c_str(), kind, flags, handle, &error)
               : declarer_->declare(builder_, name.c_str(), kind, handle, &error);
    detail::host_slot()->tensor_release(handle);
    detail::throw_if_failed(status, error);
    names_.push_back(name);
  }

  std::string module_name_;
  std::string module_type_;
  std::string target_;
  QuantType quant_type_;
  Config config_;
  torch::Tensor sample_;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> values_;
  std::vector<shrink_tensor*> bound_;  // the handles values_ came from
  std::vector<torch::Tensor> grads_;
  const shrink_state_declarer* declarer_ = nullptr;
  shrink_state_builder* builder_ = nullptr;
};

// NNI's QuantGrad: the backward of a quantize call. The default is the straight-through estimator.
class QuantGrad {
 public:
  virtual ~QuantGrad() = default;
  // `tensor` is the quantize call's input, `grad_output` the gradient of its output; returns the
  // gradient of the input. Gradients of learnable state go through site.set_grad(name, grad).
  virtual torch::Tensor quant_backward(torch::Tensor tensor, torch::Tensor grad_output,
                                       QuantType quant_type, Site& site) {
    (void)tensor;
    (void)quant_type;
    (void)site;
    return grad_output;
  }
};

// NNI's Quantizer. Constructed from the compress stage's options.
class Quantizer {
 public:
  explicit Quantizer(const Config& options) : options_(options) {}
  virtual ~Quantizer() = default;

  // Called once per site before any quantize call: validate the site's config, declare state.
  virtual void setup_site(Site& site) { (void)site; }

  virtual torch::Tensor quantize_weight(torch::Tensor weight, const Config& config, Site& site) {
    (void)config;
    (void)site;
    return weight;
  }
  virtual torch::Tensor quantize_input(torch::Tensor input, const Config& config, Site& site) {
    (void)config;
    (void)site;
    return input;
  }
  virtual torch::Tensor quantize_output(torch::Tensor output, const Config& config, Site& site) {
    (void)config;
    (void)site;
    return output;
  }
  virtual void update_epoch(int epoch) { (void)epoch; }
  virtual void step() {}
  // After the calibration forwards (is_calibrating() was true in them): turn what was recorded for
  // `site` into its quantization parameters. Register with kCalibration to be calibrated.
  virtual void end_calibration(Site& site) { (void)site; }
  // Register with kExport to have this called, once per site at export, for every site
  // (activation sites and sites that never saw data too). Leave `scale` undefined when the site
  // has no quantization parameters: it stays in float in the exported model. Otherwise `scale` is
  // a float tensor of 1 element (per tensor) or one per channel (dim 0 of a weight, dim 1 of an
  // activation), every value positive and finite, and `zero_point` undefined or a float tensor of
  // the same element count within [quant_min, quant_max]. The host refuses anything else naming
  // the site.
  virtual Calibration export_site(Site& site) {
    throw Unsupported("calibration export is not implemented for site " + site.module_name() + "." +
                      site.target());
  }

  const Config& options() const { return options_; }

  // NNI: `self.quant_grad = ClipGrad`. Left empty, the host uses the straight-through estimator.
  std::unique_ptr<QuantGrad> quant_grad;

  // Set in the constructor when quantize_* and the QuantGrad work on tensors in any dense layout
  // (element-wise work does) and return results in their input's layout (allocate them with
  // torch::empty_strided(x.sizes(), x.strides(), x.options()); empty_like may pick other strides
  // for size-1 dimensions):
  // the host then passes channels-last activations without a contiguous copy. Left false, every
  // tensor arrives contiguous.
  bool any_dense_layout = false;

 private:
  Config options_;
};

// What a masker sees of one wrapped module.
struct Wrapper {
  std::string name;
  std::string type;
  Config config;
  torch::Tensor weight;
  torch::Tensor bias;         // undefined when the module has no bias
  torch::Tensor weight_grad;  // the latest step's gradient, in Pruner::observe only
  // [N, C]: per sample and output channel, sum over positions of output * dLoss/doutput at the
  // latest step; in Pruner::observe only, when observes_outputs() says so (ABI 1.4).
  torch::Tensor output_grad_product;
};

// NNI's WeightMasker.
class WeightMasker {
 public:
  explicit WeightMasker(const Config& options) : options_(options) {}
  virtual ~WeightMasker() = default;
  virtual Masks calc_mask(double sparsity, const Wrapper& wrapper, int wrapper_idx) = 0;
  // Optional: a score per prunable unit (per output channel for filter pruning, the weight's
  // shape for unstructured), higher kept longer; lets the host rank units across layers (a
  // global sparsity). Undefined: this masker ranks within a layer only.
  virtual torch::Tensor importance(const Wrapper& wrapper, int wrapper_idx) {
    (void)wrapper;
    (void)wrapper_idx;
    return {};
  }
  const Config& options() const { return options_; }

 private:
  Config options_;
};

// NNI's Pruner: owns a masker and the schedule hooks. When masks are computed is the experiment's
// (the stage's `schedule`: one_shot, linear, agp), so NNI's `if_calculated` has no counterpart.
// A pruner that ranks by what it observes while its stage trains (observe(); first-order Taylor)
// redeclares `static constexpr bool kRanksInTraining = true;` (ABI 1.5): the host then computes its
// masks at the end of each stretch of training rather than at the start, and requires the stage to
// train. (`kOneShot`, which said this by being false, is gone: redeclaring it fails to compile.)
class Pruner {
 public:
  static constexpr bool kRanksInTraining = false;

  explicit Pruner(const Config& options) : options_(options) {}
  virtual ~Pruner() = default;
  virtual Masks calc_mask(double sparsity, const Wrapper& wrapper, int wrapper_idx) {
    if (!masker) throw std::runtime_error("pruner has no masker");
    return masker->calc_mask(sparsity, wrapper, wrapper_idx);
  }
  virtual torch::Tensor importance(const Wrapper& wrapper, int wrapper_idx) {
    return masker ? masker->importance(wrapper, wrapper_idx) : torch::Tensor();
  }
  virtual void update_epoch(int epoch) { (void)epoch; }
  virtual void step() {}
  // After each training step's backward, once per wrapper; wrapper.weight_grad is set, and
  // wrapper.output_grad_product when observes_outputs() is true.
  virtual void observe(const Wrapper& wrapper, int wrapper_idx) {
    (void)wrapper;
    (void)wrapper_idx;
  }
  // The coefficient of an L1 penalty on the wrapped weights added to the loss while this
  // pruner's stage trains (0: none).
  virtual double l1_penalty() const { return 0.0; }
  // True: the host records each wrapped op's output and its gradient while this pruner's stage
  // trains, for observe (a copy of each output per step). Asked once, when the stage starts.
  virtual bool observes_outputs() const { return false; }
  const Config& options() const { return options_; }

  std::unique_ptr<WeightMasker> masker;

 private:
  Config options_;
};

// A data source (ABI 1.6): one instance per split, constructed from the keys of the experiment's
// `data:` mapping it declares (`.data_keys({...})`), with `path` and `test_path` when given
// (absolute) and `split` ("train" or "test"). The host prepares the samples (transforms,
// batching) and checks their shape, dtype and labels.
class Dataset {
 public:
  explicit Dataset(const Config& options) : options_(options) {}
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // The shape of every input: [C, H, W] or [H, W].
  virtual std::vector<int64_t> shape() const = 0;
  // Sample `index`: uint8 pixels (0..255, scaled to [0, 1] by the host) or float32 values, and
  // its class index. Called from several threads at once.
  virtual std::pair<torch::Tensor, int64_t> get(int64_t index) const = 0;
  const Config& options() const { return options_; }

 private:
  Config options_;
};

namespace detail {

class SiteAccess {
 public:
  static void begin_setup(Site& site, const shrink_state_declarer* d, shrink_state_builder* b,
                          const shrink_tensor* sample) {
    site.declarer_ = d;
    site.builder_ = b;
    site.sample_ = from_handle(sample);
  }
  static void end_setup(Site& site) {
    site.sample_ = torch::Tensor();
    site.declarer_ = nullptr;
    site.builder_ = nullptr;
    site.values_.assign(site.names_.size(), torch::Tensor());
    site.grads_.assign(site.names_.size(), torch::Tensor());
  }
  static void bind_state(Site& site, shrink_tensor* const* state, uint32_t count) {
    if (count != site.names_.size()) {
      throw std::runtime_error("host passed " + std::to_string(count) + " state tensors, site " +
                               site.module_name_ + "." + site.target_ + " declared " +
                               std::to_string(site.names_.size()));
    }
    // A host with stable state handles passes the same handles for the same tensors: the
    // tensors converted last time are still the right ones (a conversion costs ~1 us each).
    if (stable_state_handles() && site.bound_.size() == count &&
        std::equal(site.bound_.begin(), site.bound_.end(), state)) {
      return;
    }
    for (uint32_t i = 0; i < count; ++i) site.values_[i] = from_handle(state[i]);
    site.bound_.assign(state, state + count);
  }
  static void unbind_state(Site& site) {
    if (!stable_state_handles()) {
      for (auto& v : site.values_) v = torch::Tensor();
      site.bound_.clear();
    }
    for (auto& g : site.grads_) g = torch::Tensor();
  }
  static bool stable_state_handles() {
    const shrink_host_api* host = host_slot();
    return host != nullptr && SHRINK_HAS_FIELD(host, shrink_host_api, flags) &&
           (host->flags & SHRINK_HOST_STABLE_STATE_HANDLES) != 0;
  }
  static std::vector<torch::Tensor>& grads(Site& site) { return site.grads_; }
};

// Binds a site's state for the duration of one call.
class StateScope {
 public:
  StateScope(Site& site, shrink_tensor* const* state, uint32_t count) : site_(site) {
    SiteAccess::bind_state(site_, state, count);
  }
  ~StateScope() { SiteAccess::unbind_state(site_); }
  StateScope(const StateScope&) = delete;
  StateScope& operator=(const StateScope&) = delete;

 private:
  Site& site_;
};

// ---- Quantizer trampolines (shared by every quantizer type) ----

inline shrink_status quantizer_setup_site(void* self, const shrink_site_info* info,
                                          const shrink_state_declarer* declarer,
                                          shrink_state_builder* builder, void** out_site,
                                          shrink_error* error) {
  return guarded(error, [&] {
    auto site = std::make_unique<Site>(*info);
    SiteAccess::begin_setup(*site, declarer, builder, info->sample);
    static_cast<Quantizer*>(self)->setup_site(*site);
    SiteAccess::end_setup(*site);
    *out_site = site.release();
  });
}

inline void quantizer_destroy_site(void* self, void* site) {
  (void)self;
  delete static_cast<Site*>(site);
}

template <QuantType kType>
shrink_status quantizer_quantize(void* self, void* site_ptr, const shrink_tensor* input,
                                 shrink_tensor* const* state, uint32_t state_count,
                                 shrink_tensor** out, shrink_error* error) {
  return guarded(error, [&] {
    torch::NoGradGuard no_grad;
    auto* quantizer = static_cast<Quantizer*>(self);
    Site& site = *static_cast<Site*>(site_ptr);
    StateScope scope(site, state, state_count);
    torch::Tensor x = from_handle(input);
    torch::Tensor y;
    if (kType == QuantType::kWeight) {
      y = quantizer->quantize_weight(x, site.config(), site);
    } else if (kType == QuantType::kInput) {
      y = quantizer->quantize_input(x, site.config(), site);
    } else {
      y = quantizer->quantize_output(x, site.config(), site);
    }
    if (!y.defined()) throw std::runtime_error("quantize returned an undefined tensor");
    *out = to_handle(y);
  });
}

inline shrink_status quantizer_update_epoch(void* self, int32_t epoch, shrink_error* error) {
  return guarded(error, [&] { static_cast<Quantizer*>(self)->update_epoch(epoch); });
}

inline shrink_status quantizer_step(void* self, shrink_error* error) {
  return guarded(error, [&] { static_cast<Quantizer*>(self)->step(); });
}

inline shrink_status quantizer_end_calibration(void* self, void* site_ptr,
                                               shrink_tensor* const* state, uint32_t state_count,
                                               shrink_error* error) {
  return guarded(error, [&] {
    torch::NoGradGuard no_grad;
    Site& site = *static_cast<Site*>(site_ptr);
    StateScope scope(site, state, state_count);
    static_cast<Quantizer*>(self)->end_calibration(site);
  });
}

inline void copy_text(char* dst, std::size_t capacity, const std::string& src) {
  std::snprintf(dst, capacity, "%s", src.c_str());
}

inline shrink_status quantizer_export_site(void* self, void* site_ptr, shrink_tensor* const* state,
                                           uint32_t state_count, shrink_calibration* out,
                                           shrink_error* error) {
  return guarded(error, [&] {
    torch::NoGradGuard no_grad;
    Site& site = *static_cast<Site*>(site_ptr);
    StateScope scope(site, state, state_count);
    Calibration c = static_cast<Quantizer*>(self)->export_site(site);
    shrink_calibration result;
    std::memset(&result, 0, sizeof(result));
    result.struct_size = sizeof(result);
    result.scale = to_handle(c.scale);
    result.zero_point = to_handle(c.zero_point);
    result.quant_bits = c.quant_bits;
    copy_text(result.quant_dtype, sizeof(result.quant_dtype), c.quant_dtype);
    copy_text(result.quant_scheme, sizeof(result.quant_scheme), c.quant_scheme);
    result.tracked_min = c.tracked_min;
    result.tracked_max = c.tracked_max;
    result.quant_min = c.quant_min;
    result.quant_max = c.quant_max;
    *out = result;
  });
}

inline shrink_status quant_backward(void* self, void* site_ptr, shrink_quant_type quant_type,
                                    const shrink_tensor* tensor, const shrink_tensor* grad_output,
                                    shrink_tensor* const* state, uint32_t state_count,
                                    shrink_tensor** out_grad_input, shrink_tensor** out_state_grads,
                                    shrink_error* error) {
  return guarded(error, [&] {
    torch::NoGradGuard no_grad;
    auto* quantizer = static_cast<Quantizer*>(self);
    if (!quantizer->quant_grad) throw std::runtime_error("instance has no QuantGrad");
    Site& site = *static_cast<Site*>(site_ptr);
    StateScope scope(site, state, state_count);
    torch::Tensor grad = quantizer->quant_grad->quant_backward(
        from_handle(tensor), from_handle(grad_output), static_cast<QuantType>(quant_type), site);
    if (!grad.defined()) throw std::runtime_error("quant_backward returned an undefined tensor");
    std::vector<shrink_tensor*> state_grads;
    for (const auto& g : SiteAccess::grads(site)) state_grads.push_back(to_handle(g));
    *out_grad_input = to_handle(grad);
    for (uint32_t i = 0; i < state_count; ++i) out_state_grads[i] = state_grads[i];
  });
}

// ---- Masker / pruner trampolines ----

inline Wrapper make_wrapper(const shrink_wrapper_info* info) {
  Wrapper w;
  w.name = info->module_name;
  w.type = info->module_type;
  w.config = Config(info->config);
  w.weight = from_handle(info->weight);
  w.bias = from_handle(info->bias);
  if (SHRINK_HAS_FIELD(info, shrink_wrapper_info, weight_grad))
    w.weight_grad = from_handle(info->weight_grad);
  if (SHRINK_HAS_FIELD(info, shrink_wrapper_info, output_grad_product)) {
    w.output_grad_product = from_handle(info->output_grad_product);
  }
  return w;
}

template <typename Object>
shrink_status masker_calc_mask(void* self, double sparsity, const shrink_wrapper_info* wrapper,
                               int32_t wrapper_idx, shrink_tensor** out_weight_mask,
                               shrink_tensor** out_bias_mask, shrink_error* error) {
  return guarded(error, [&] {
    torch::NoGradGuard no_grad;
    Masks masks =
        static_cast<Object*>(self)->calc_mask(sparsity, make_wrapper(wrapper), wrapper_idx);
    if (!masks.weight_mask.defined()) throw std::runtime_error("calc_mask returned no weight_mask");
    shrink_tensor* bias = to_handle(masks.bias_mask);
    *out_weight_mask = to_handle(masks.weight_mask);
    *out_bias_mask = bias;
  });
}

template <typename Object>
shrink_status masker_importance(void* self, const shrink_wrapper_info* wrapper, int32_t wrapper_idx,
                                shrink_tensor** out_scores, shrink_error* error) {
  return guarded(error, [&] {
    torch::NoGradGuard no_grad;
    *out_scores =
        to_handle(static_cast<Object*>(self)->importance(make_wrapper(wrapper), wrapper_idx));
  });
}

inline shrink_status pruner_observe(void* self, const shrink_wrapper_info* wrapper,
                                    int32_t wrapper_idx, shrink_error* error) {
  return guarded(error, [&] {
    torch::NoGradGuard no_grad;
    static_cast<Pruner*>(self)->observe(make_wrapper(wrapper), wrapper_idx);
  });
}
inline shrink_status pruner_l1_penalty(void* self, double* out, shrink_error* error) {
  return guarded(error, [&] { *out = static_cast<Pruner*>(self)->l1_penalty(); });
}
inline shrink_status pruner_observes_outputs(void* self, int32_t* out, shrink_error* error) {
  return guarded(error, [&] { *out = static_cast<Pruner*>(self)->observes_outputs() ? 1 : 0; });
}

inline shrink_status pruner_update_epoch(void* self, int32_t epoch, shrink_error* error) {
  return guarded(error, [&] { static_cast<Pruner*>(self)->update_epoch(epoch); });
}
inline shrink_status pruner_step(void* self, shrink_error* error) {
  return guarded(error, [&] { static_cast<Pruner*>(self)->step(); });
}

// ---- Data source trampolines ----

inline shrink_status dataset_describe(void* self, int64_t* out_count, int32_t* out_ndim,
                                      int64_t* out_shape, shrink_error* error) {
  return guarded(error, [&] {
    const auto* dataset = static_cast<const Dataset*>(self);
    const std::vector<int64_t> shape = dataset->shape();
    if (shape.size() > SHRINK_DATA_SOURCE_MAX_DIMS) {
      throw std::runtime_error("shape() has more than 8 dimensions");
    }
    const int64_t count = dataset->size();
    for (std::size_t d = 0; d < shape.size(); ++d) out_shape[d] = shape[d];
    *out_ndim = static_cast<int32_t>(shape.size());
    *out_count = count;
  });
}

inline shrink_status dataset_get(void* self, int64_t index, shrink_tensor** out_input,
                                 int64_t* out_label, shrink_error* error) {
  return guarded(error, [&] {
    torch::NoGradGuard no_grad;
    auto [input, label] = static_cast<const Dataset*>(self)->get(index);
    if (!input.defined()) throw std::runtime_error("get returned an undefined tensor");
    *out_input = to_handle(input);
    *out_label = label;
  });
}

template <typename T, typename Base>
shrink_status create_instance(const shrink_options* options, shrink_instance* out,
                              shrink_error* error) {
  return guarded(error, [&] {
    auto object = std::make_unique<T>(Config(options));
    shrink_instance result;
    result.struct_size = sizeof(result);
    result.flags = 0;
    if constexpr (std::is_base_of<Quantizer, T>::value) {
      if (object->quant_grad) result.flags |= SHRINK_INSTANCE_HAS_QUANT_GRAD;
      if (object->any_dense_layout) result.flags |= SHRINK_INSTANCE_ANY_DENSE_LAYOUT;
    }
    result.handle = static_cast<Base*>(object.release());
    *out = result;
  });
}

template <typename Base>
void destroy_instance(void* self) {
  delete static_cast<Base*>(self);
}

inline std::string build_tag() {
  std::ostringstream tag;
  tag << "torch=" << TORCH_VERSION_MAJOR << "." << TORCH_VERSION_MINOR << "." << TORCH_VERSION_PATCH
      << ";cxx11_abi=" << _GLIBCXX_USE_CXX11_ABI << ";compiler=";
#if defined(__clang__)
  tag << "clang " << __clang_major__ << "." << __clang_minor__;
#elif defined(__GNUC__)
  tag << "gcc " << __GNUC__ << "." << __GNUC_MINOR__;
#else
  tag << "unknown";
#endif
  return tag.str();
}

}  // namespace detail

// Collects a plugin's algorithms; handed to the SHRINK_PLUGIN block as `plugin`.
class PluginBuilder {
 public:
  PluginBuilder(std::string name, std::string version)
      : name_(std::move(name)), version_(std::move(version)), build_tag_(detail::build_tag()) {}

  // Registers a quantizer class (constructible from const shrink::Config&). A QuantGrad set in
  // its constructor (`quant_grad = std::make_unique<ClipGrad>()`) is used for its backward.
  template <typename T>
  PluginBuilder& quantizer(const std::string& name, const std::string& description,
                           shrink_capabilities capabilities,
                           const std::string& supported_op_types = "") {
    static_assert(std::is_base_of<Quantizer, T>::value, "T must derive from shrink::Quantizer");
    static const shrink_quantizer_api api = {
        sizeof(shrink_quantizer_api),
        &detail::quantizer_setup_site,
        &detail::quantizer_destroy_site,
        &detail::quantizer_quantize<QuantType::kWeight>,
        &detail::quantizer_quantize<QuantType::kInput>,
        &detail::quantizer_quantize<QuantType::kOutput>,
        &detail::quantizer_update_epoch,
        &detail::quantizer_step,
        &detail::quantizer_export_site,
        &detail::quantizer_end_calibration,
    };
    static const shrink_quant_grad_api grad_api = {sizeof(shrink_quant_grad_api),
                                                   &detail::quant_backward};
    shrink_algorithm_descriptor& d = add(name, description, supported_op_types);
    d.kinds = SHRINK_KIND_QUANTIZER;
    d.capabilities = capabilities;
    d.create = &detail::create_instance<T, Quantizer>;
    d.destroy = &detail::destroy_instance<Quantizer>;
    d.quantizer = &api;
    d.quant_grad = &grad_api;
    return *this;
  }

  // Registers a weight masker class; the host calls calc_mask on the stage's schedule.
  template <typename T>
  PluginBuilder& masker(const std::string& name, const std::string& description,
                        const std::string& supported_op_types = "") {
    static_assert(std::is_base_of<WeightMasker, T>::value,
                  "T must derive from shrink::WeightMasker");
    static const shrink_masker_api api = {sizeof(shrink_masker_api),
                                          &detail::masker_calc_mask<WeightMasker>,
                                          &detail::masker_importance<WeightMasker>};
    shrink_algorithm_descriptor& d = add(name, description, supported_op_types);
    d.kinds = SHRINK_KIND_WEIGHT_MASKER;
    d.create = &detail::create_instance<T, WeightMasker>;
    d.destroy = &detail::destroy_instance<WeightMasker>;
    d.masker = &api;
    return *this;
  }

  // Registers a pruner class (owning its masker).
  template <typename T>
  PluginBuilder& pruner(const std::string& name, const std::string& description,
                        const std::string& supported_op_types = "") {
    static_assert(std::is_base_of<Pruner, T>::value, "T must derive from shrink::Pruner");
    static_assert(
        !detail::declares_one_shot<T>::value,
        "shrink::Pruner::kOneShot is gone (ABI 1.5): the stage's schedule says when masks "
        "are computed. A pruner that ranks by what it observes in training declares "
        "static constexpr bool kRanksInTraining = true; otherwise delete kOneShot");
    static const shrink_masker_api api = {sizeof(shrink_masker_api),
                                          &detail::masker_calc_mask<Pruner>,
                                          &detail::masker_importance<Pruner>};
    // one_shot: what hosts before ABI 1.5 read as "does not rank in training".
    static const shrink_pruner_api pruner_api = {
        sizeof(shrink_pruner_api),       T::kRanksInTraining ? 0 : 1,
        &detail::pruner_update_epoch,    &detail::pruner_step,
        &detail::pruner_observe,         &detail::pruner_l1_penalty,
        &detail::pruner_observes_outputs};
    shrink_algorithm_descriptor& d = add(name, description, supported_op_types);
    d.kinds = SHRINK_KIND_WEIGHT_MASKER | SHRINK_KIND_PRUNER;
    d.capabilities = T::kRanksInTraining ? SHRINK_CAP_RANKS_IN_TRAINING : 0;
    d.create = &detail::create_instance<T, Pruner>;
    d.destroy = &detail::destroy_instance<Pruner>;
    d.masker = &api;
    d.pruner = &pruner_api;
    return *this;
  }

  // Registers a data source class (constructible from const shrink::Config&), ABI 1.6. Its keys
  // in the experiment's `data:` mapping are declared with .data_keys({...}).
  template <typename T>
  PluginBuilder& dataset(const std::string& name, const std::string& description) {
    static_assert(std::is_base_of<Dataset, T>::value, "T must derive from shrink::Dataset");
    static const shrink_data_source_api api = {sizeof(shrink_data_source_api),
                                               &detail::dataset_describe, &detail::dataset_get};
    shrink_algorithm_descriptor& d = add(name, description, "");
    d.kinds = SHRINK_KIND_DATA_SOURCE;
    d.create = &detail::create_instance<T, Dataset>;
    d.destroy = &detail::destroy_instance<Dataset>;
    d.data_source = &api;
    return *this;
  }

  // Declares the keys of `data:` the data source registered just before reads, e.g.
  //   plugin.dataset<CsvRows>("csv_rows", "...").data_keys({"delimiter", "side"});
  PluginBuilder& data_keys(const std::vector<std::string>& keys) {
    if (algorithms_.empty() || !(algorithms_.back().kinds & SHRINK_KIND_DATA_SOURCE)) {
      throw std::logic_error("data_keys: register a data source first (plugin.dataset<T>(...))");
    }
    algorithms_.back().data_keys = key_list(keys);
    return *this;
  }

  // Declares the per-site config keys of the algorithm registered just before (ABI 1.5), e.g.
  //   plugin.quantizer<Qat>("qat", "...", shrink::kTraining).site_keys({"quant_start_step"});
  // A config_list entry of a stage using it may then give them; the framework refuses other keys
  // it does not know, naming file, line and column. Keys are read in setup_site from
  // site.config().
  PluginBuilder& site_keys(const std::vector<std::string>& keys) {
    if (algorithms_.empty()) {
      throw std::logic_error("site_keys: register an algorithm first (plugin.quantizer<T>(...))");
    }
    algorithms_.back().site_keys = key_list(keys);
    return *this;
  }

  const shrink_plugin_descriptor* descriptor() {
    pointers_.clear();
    for (auto& d : algorithms_) pointers_.push_back(&d);
    descriptor_.struct_size = sizeof(shrink_plugin_descriptor);
    descriptor_.abi_major = SHRINK_ABI_VERSION_MAJOR;
    descriptor_.abi_minor = SHRINK_ABI_VERSION_MINOR;
    descriptor_.name = name_.c_str();
    descriptor_.version = version_.c_str();
    descriptor_.build_tag = build_tag_.c_str();
    descriptor_.algorithm_count = static_cast<uint32_t>(pointers_.size());
    descriptor_.algorithms = pointers_.data();
    return &descriptor_;
  }

 private:
  // A NULL-terminated array of `keys` that lives as long as the builder.
  const char* const* key_list(const std::vector<std::string>& keys) {
    key_lists_.emplace_back();
    for (const auto& key : keys) {
      strings_.push_back(key);
      key_lists_.back().push_back(strings_.back().c_str());
    }
    key_lists_.back().push_back(nullptr);
    return key_lists_.back().data();
  }

  shrink_algorithm_descriptor& add(const std::string& name, const std::string& description,
                                   const std::string& op_types) {
    strings_.push_back(name);
    const char* name_ptr = strings_.back().c_str();
    strings_.push_back(description);
    const char* description_ptr = strings_.back().c_str();
    const char* op_types_ptr = nullptr;
    if (!op_types.empty()) {
      strings_.push_back(op_types);
      op_types_ptr = strings_.back().c_str();
    }
    algorithms_.emplace_back();
    shrink_algorithm_descriptor& d = algorithms_.back();
    std::memset(&d, 0, sizeof(d));
    d.struct_size = sizeof(d);
    d.name = name_ptr;
    d.description = description_ptr;
    d.supported_op_types = op_types_ptr;
    return d;
  }

  std::string name_;
  std::string version_;
  std::string build_tag_;
  std::deque<std::string> strings_;  // deque: stable c_str() pointers
  std::deque<shrink_algorithm_descriptor> algorithms_;
  std::deque<std::vector<const char*>> key_lists_;  // NULL-terminated site_keys, data_keys
  std::vector<const shrink_algorithm_descriptor*> pointers_;
  shrink_plugin_descriptor descriptor_{};
};

namespace detail {

// Body of the exported entry point: builds the descriptor once; never throws.
inline const shrink_plugin_descriptor* plugin_entry(const shrink_host_api* host, const char* name,
                                                    const char* version,
                                                    void (*register_fn)(PluginBuilder&)) noexcept {
  host_slot() = host;
  plugin_name_slot() = name;
  try {
    // Built once and never freed: the library is never unloaded, and the descriptor points into
    // the builder's strings.
    static PluginBuilder* builder = [&] {
      auto b = std::make_unique<PluginBuilder>(name, version);
      register_fn(*b);
      return b.release();
    }();
    return builder->descriptor();
  } catch (const std::exception& e) {
    log(SHRINK_LOG_ERROR, std::string("registration failed: ") + e.what());
  } catch (...) {
    log(SHRINK_LOG_ERROR, "registration failed: unknown exception");
  }
  return nullptr;
}

}  // namespace detail
}  // namespace shrink

// Defines the plugin's entry point; the block that follows registers its algorithms through
// `plugin` (a shrink::PluginBuilder&). Use once per plugin library.
#define SHRINK_PLUGIN(NAME, VERSION)                                                      \
  static void shrink_register_plugin_(::shrink::PluginBuilder& plugin);                   \
  extern "C" SHRINK_PLUGIN_EXPORT const shrink_plugin_descriptor* shrink_plugin_entry(    \
      const shrink_host_api* host) {                                                      \
    return ::shrink::detail::plugin_entry(host, NAME, VERSION, &shrink_register_plugin_); \
  }                                                                                       \
  static void shrink_register_plugin_(::shrink::PluginBuilder& plugin)
