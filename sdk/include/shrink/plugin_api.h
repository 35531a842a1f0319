/*
 * Shrink plugin ABI, version 1 (minor 7).
 *
 * This header is the whole contract between the Shrink host and an algorithm plugin. It is plain C
 * (C99, <stdint.h> and <stddef.h> only) so that a plugin can be written in C, or in C++ by any
 * compiler, and still load into the host.
 *
 * A plugin is a shared library exporting exactly one symbol:
 *
 *     const shrink_plugin_descriptor* shrink_plugin_entry(const shrink_host_api* host);
 *
 * The host calls it once, right after loading the library, and keeps the library loaded for the
 * life of the process (libraries that link LibTorch cannot be unloaded safely). The returned
 * descriptor, and everything it points to, must stay valid and unchanged for as long as the library
 * is loaded. `host` is valid for the same time.
 *
 * Versioning rules
 *  - SHRINK_ABI_VERSION_MAJOR changes only when an existing field or signature changes; the host
 *    refuses a plugin whose major differs from its own.
 *  - SHRINK_ABI_VERSION_MINOR grows when fields are appended to a struct or table. Every struct and
 *    table starts with `struct_size`; a reader checks `struct_size` (SHRINK_HAS_FIELD) before it
 *    reads a field, so a plugin built against an older minor (smaller structs) loads and its
 *    missing fields read as absent. Fields are only ever appended; to change a signature, add a
 *    `_v2` entry.
 *
 * Errors
 *  - Every callable returns a shrink_status (0 = SHRINK_STATUS_OK). On failure the callee writes a
 *    one-line UTF-8 message into the caller's shrink_error and leaves its out-parameters untouched.
 *  - No exception may cross this boundary; the C++ SDK catches them for plugin authors.
 *
 * Tensors
 *  - Tensors cross as opaque `shrink_tensor*` handles owned by the host. A handle passed *into* a
 *    plugin call is borrowed: valid until that call returns. A handle a plugin returns through an
 *    out-parameter is a new reference that the receiver releases with host->tensor_release.
 *  - C plugins read and write tensors through the host table (tensor_create, tensor_data, ...).
 *    C++ plugins that link LibTorch convert zero-copy through DLPack (tensor_to_dlpack,
 *    tensor_from_dlpack); the SDK does this for them.
 *  - All tensors handed to plugins are CPU, contiguous and dense.
 *
 * ABI 1.5 adds: an algorithm's declared site keys (site_keys) and SHRINK_CAP_RANKS_IN_TRAINING;
 * parameters without weight decay (declare_v2, SHRINK_STATE_NO_WEIGHT_DECAY); the host's
 * tensor_const_data; the export contract written out at shrink_calibration.
 *
 * ABI 1.6 adds: data sources (SHRINK_KIND_DATA_SOURCE, shrink_data_source_api, data_keys).
 *
 * ABI 1.7 adds: collectives over the ranks of a distributed run (world_size, rank, all_reduce,
 * broadcast), so that statistics a plugin gathers from its rank's data become the same on every
 * rank.
 *
 * Threading: the host calls one plugin instance from one thread at a time. Different instances may
 * be used from different threads. The exception is a data source's `get`, which the loader's
 * worker threads call at once.
 */
#ifndef SHRINK_PLUGIN_API_H
#define SHRINK_PLUGIN_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHRINK_ABI_VERSION_MAJOR 1
#define SHRINK_ABI_VERSION_MINOR 7

/* Name of the one exported entry point. */
#define SHRINK_PLUGIN_ENTRY_SYMBOL "shrink_plugin_entry"

#if defined(_WIN32)
#define SHRINK_PLUGIN_EXPORT __declspec(dllexport)
#else
#define SHRINK_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* True when a struct that starts with `struct_size` is large enough to contain `field`. */
#define SHRINK_HAS_FIELD(ptr, type, field) \
  ((ptr) != NULL && (ptr)->struct_size >= offsetof(type, field) + sizeof(((type*)0)->field))

/* ---------------------------------------------------------------------------------------------- */
/* Status and errors */

typedef int32_t shrink_status;
enum {
  SHRINK_STATUS_OK = 0,
  SHRINK_STATUS_ERROR = 1,            /* generic failure; the message says what */
  SHRINK_STATUS_INVALID_ARGUMENT = 2, /* bad option, bad config, tensor of the wrong shape */
  SHRINK_STATUS_UNSUPPORTED = 3,      /* the plugin cannot do this (op type, bit width, ...) */
  SHRINK_STATUS_OUT_OF_MEMORY = 4
};

#define SHRINK_ERROR_MESSAGE_CAPACITY 1024

/* Caller-owned error slot passed to every call. The callee writes a NUL-terminated message,
 * truncated to the capacity, only when it returns a non-OK status. */
typedef struct shrink_error {
  uint32_t struct_size;
  char message[SHRINK_ERROR_MESSAGE_CAPACITY];
} shrink_error;

/* ---------------------------------------------------------------------------------------------- */
/* Tensors and key/value options */

typedef struct shrink_tensor shrink_tensor; /* opaque, host-owned */

typedef int32_t shrink_dtype;
enum {
  SHRINK_DTYPE_FLOAT32 = 0,
  SHRINK_DTYPE_FLOAT64 = 1,
  SHRINK_DTYPE_INT8 = 2,
  SHRINK_DTYPE_UINT8 = 3,
  SHRINK_DTYPE_INT32 = 4,
  SHRINK_DTYPE_INT64 = 5,
  SHRINK_DTYPE_BOOL = 6
};

/* One option or config entry. Values are the YAML scalar text ("8", "affine", "true"); nested
 * mappings are flattened with dots ("quant_bits.weight" = "8") and sequences written as flow YAML
 * ("[Conv2d, Linear]"). Both pointers are borrowed for the duration of the call. */
typedef struct shrink_kv {
  const char* key;
  const char* value;
} shrink_kv;

typedef struct shrink_options {
  uint32_t struct_size;
  const shrink_kv* entries;
  uint32_t count;
  /* the same mapping as YAML text, for plugins that parse it themselves; may be "" */
  const char* text;
} shrink_options;

/* ---------------------------------------------------------------------------------------------- */
/* The host API: what the host offers to plugins */

typedef int32_t shrink_log_level;
enum {
  SHRINK_LOG_TRACE = 0,
  SHRINK_LOG_DEBUG = 1,
  SHRINK_LOG_INFO = 2,
  SHRINK_LOG_WARN = 3,
  SHRINK_LOG_ERROR = 4
};

/* Since ABI 1.7: how all_reduce combines the ranks' tensors. */
typedef int32_t shrink_reduce_op;
enum {
  SHRINK_REDUCE_SUM = 0,
  SHRINK_REDUCE_MIN = 1,
  SHRINK_REDUCE_MAX = 2,
  SHRINK_REDUCE_MEAN = 3 /* float tensors */
};

typedef struct shrink_host_api {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  const char* host_version; /* e.g. "0.1.0" */

  /* Logs one line through the host's logger, prefixed with the plugin's name. Never fails. */
  void (*log)(shrink_log_level level, const char* plugin_name, const char* message);

  /* New zero-filled contiguous CPU tensor; *out is a new reference. */
  shrink_status (*tensor_create)(shrink_dtype dtype, int32_t ndim, const int64_t* shape,
                                 shrink_tensor** out, shrink_error* error);
  /* New reference to a deep copy of `tensor`. */
  shrink_status (*tensor_clone)(const shrink_tensor* tensor, shrink_tensor** out,
                                shrink_error* error);
  /* Releases a reference obtained from the host or returned by a plugin. NULL is ignored. */
  void (*tensor_release)(shrink_tensor* tensor);

  int32_t (*tensor_ndim)(const shrink_tensor* tensor);
  /* Writes tensor_ndim() sizes into `shape`. */
  void (*tensor_shape)(const shrink_tensor* tensor, int64_t* shape);
  int64_t (*tensor_numel)(const shrink_tensor* tensor);
  shrink_dtype (*tensor_dtype)(const shrink_tensor* tensor);
  /* Borrowed pointer to the first element, valid while the handle is; writable. For a tensor the
   * plugin only reads (a borrowed input), prefer tensor_const_data (since ABI 1.5). */
  void* (*tensor_data)(shrink_tensor* tensor);

  /* DLPack bridge, for plugins that link LibTorch. `*out` receives a DLManagedTensor* (DLPack 0.6,
   * as LibTorch 1.13 ships it) sharing memory with `tensor`; the receiver owns it and calls its
   * deleter. */
  shrink_status (*tensor_to_dlpack)(const shrink_tensor* tensor, void** out, shrink_error* error);
  /* Takes ownership of `dl_managed` (a DLManagedTensor*) and returns a new handle sharing its
   * memory (a dense strided tensor keeps its layout; others are made contiguous). On failure the
   * deleter has still been called. */
  shrink_status (*tensor_from_dlpack)(void* dl_managed, shrink_tensor** out, shrink_error* error);

  /* Non-zero while the quantize call in progress on this thread belongs to a training forward
   * (the model is in train mode); zero in evaluation, calibration-free inference and export.
   * Plugins use it as NNI's quantizers use `module.training`. */
  int32_t (*is_training)(void);

  /* Since ABI 1.1: SHRINK_HOST_* properties of this host. */
  uint32_t flags;

  /* Since ABI 1.2: non-zero while the quantize call in progress on this thread belongs to a
   * calibration forward (post-training statistics: the model is in eval mode, nothing trains, the
   * plugin records what it needs and usually returns its input). end_calibration follows the
   * last such call. */
  int32_t (*is_calibrating)(void);

  /* Since ABI 1.5: read-only pointer to the first element of `tensor` (a borrowed input such as
   * quantize_weight's `weight`), valid while the handle is; NULL for NULL or an empty handle.
   * Writing through it is undefined. Before 1.5, C plugins cast the const away for tensor_data. */
  const void* (*tensor_const_data)(const shrink_tensor* tensor);

  /* Since ABI 1.7: the ranks of a distributed run (docs/distributed.md). Each rank trains and
   * calibrates on its own share of the data, so statistics a plugin gathers from what it sees
   * (activation ranges, histograms, importance scores) differ between ranks until combined:
   * all_reduce them, in place, before they decide anything. Every rank must make the same calls
   * in the same order: make them from a quantize call in training (is_training) or calibration
   * (is_calibrating), end_calibration, calc_mask, importance or observe, which the host calls in
   * the same order on every rank; not in evaluation, whose shares of the test set differ by a
   * batch. In a run of one process, and in work only rank 0
   * does (exports), world_size is 1 and the calls change nothing. The host checks at each epoch
   * end that every site's state is the same on every rank, and names the site when it is not. */
  int32_t (*world_size)(void);
  int32_t (*rank)(void);
  /* `op`: SHRINK_REDUCE_*. The tensor is a host handle the plugin holds (a state tensor, one from
   * tensor_create, or tensor_from_dlpack); float32, float64 or int64 (not MEAN). */
  shrink_status (*all_reduce)(shrink_tensor* tensor, shrink_reduce_op op, shrink_error* error);
  /* Rank `root`'s values into every rank's `tensor` (same shape and dtype everywhere). */
  shrink_status (*broadcast)(shrink_tensor* tensor, int32_t root, shrink_error* error);
} shrink_host_api;

/* The state handles a host passes to a site's calls are the same objects, for the same tensors,
 * in every call for the life of the site (a new tensor always comes in a new handle, allocated
 * while the old one is still alive). A plugin may keep what it derived from them, such as a
 * converted tensor, across calls instead of converting them again. */
#define SHRINK_HOST_STABLE_STATE_HANDLES 1u

/* ---------------------------------------------------------------------------------------------- */
/* Algorithms */

typedef uint32_t shrink_algorithm_kind;
enum {
  SHRINK_KIND_QUANTIZER = 1u << 0,
  SHRINK_KIND_WEIGHT_MASKER = 1u << 1,
  SHRINK_KIND_PRUNER = 1u << 2,
  SHRINK_KIND_DATA_SOURCE = 1u << 3 /* since ABI 1.6: samples for training and evaluation */
};

typedef uint64_t shrink_capabilities;
enum {
  SHRINK_CAP_CALIBRATION = 1u << 0, /* useful without training (post-training statistics) */
  SHRINK_CAP_TRAINING = 1u << 1,    /* meant to run inside a training loop */
  SHRINK_CAP_EXPORT = 1u << 2,      /* exports per-site calibration (scale, zero point, ...) */
  SHRINK_CAP_QUANT_GRAD = 1u << 3,  /* provides a custom backward (QuantGrad) */
  /* Since ABI 1.5, pruners: ranks by what it observes while its stage trains (`observe`;
   * first-order Taylor). The host computes its masks at the end of each stretch of the stage's
   * training, after the steps it observed, instead of at the start, and refuses a stage without
   * training. A plugin built against ABI 1.4 or older says this with `one_shot == 0` (see
   * shrink_pruner_api). */
  SHRINK_CAP_RANKS_IN_TRAINING = 1u << 4
};

typedef int32_t shrink_quant_type;
enum { SHRINK_QUANT_INPUT = 0, SHRINK_QUANT_WEIGHT = 1, SHRINK_QUANT_OUTPUT = 2 };

typedef int32_t shrink_state_kind;
enum {
  SHRINK_STATE_BUFFER = 0,   /* saved with the model, never trained (tracked min/max, scale) */
  SHRINK_STATE_PARAMETER = 1 /* trained by the experiment's optimizer (LSQ's step size) */
};

/* One quantization site: a (module instance, target) pair such as ("conv1", "weight") or
 * ("relu1", "_output_"). All pointers are borrowed for the duration of the call. */
typedef struct shrink_site_info {
  uint32_t struct_size;
  const char* module_name;      /* instance path: "conv1", "layer1.0.conv1" */
  const char* module_type;      /* op type: "Conv2d", "Linear", "ReLU", "add" */
  const char* target;           /* "weight", "bias", "_input_", "_output_" */
  shrink_quant_type quant_type; /* how the target is quantized */
  const shrink_options* config; /* the site's resolved config_list entry */
  const shrink_tensor* sample;  /* for weight/bias sites the current tensor; otherwise NULL */
} shrink_site_info;

/* Since ABI 1.5: flags of declare_v2. */
typedef uint32_t shrink_state_flags;
enum {
  /* A PARAMETER the optimizer trains without weight decay (a clipping bound such as PACT's alpha,
   * which decay would shrink towards zero). Without it the experiment's `weight_decay` applies to
   * plugin parameters as to the model's. Ignored for a BUFFER. */
  SHRINK_STATE_NO_WEIGHT_DECAY = 1u << 0
};

/* Handed to setup_site: the plugin declares the site's state through it. */
typedef struct shrink_state_builder shrink_state_builder; /* opaque, host-owned */

typedef struct shrink_state_declarer {
  uint32_t struct_size;
  /* Declares one named state tensor. `initial` is borrowed; the host keeps its own reference. The
   * order of declaration is the order of the `state` arrays passed to later calls. A PARAMETER is
   * trained by the experiment's optimizer, weight decay included. */
  shrink_status (*declare)(shrink_state_builder* builder, const char* name, shrink_state_kind kind,
                           const shrink_tensor* initial, shrink_error* error);
  /* Since ABI 1.5 (check struct_size): `declare` with SHRINK_STATE_* flags. Unknown flag bits are
   * refused with SHRINK_STATUS_INVALID_ARGUMENT. On an older host, fall back to `declare` (the
   * parameter then gets weight decay). */
  shrink_status (*declare_v2)(shrink_state_builder* builder, const char* name,
                              shrink_state_kind kind, shrink_state_flags flags,
                              const shrink_tensor* initial, shrink_error* error);
} shrink_state_declarer;

/* Per-site calibration, filled by export_site. Tensors are new references owned by the caller.
 *
 * The export contract (checked by the host, which names the plugin and site when it is broken):
 *  - export_site is called for every site of an instance whose algorithm declares
 *    SHRINK_CAP_EXPORT, activation sites included, whether or not the site saw data.
 *  - `scale` NULL: the site has no quantization parameters (it never saw data, or the algorithm
 *    has none for it); the exported model leaves the site in float. This is not an error.
 *  - `scale` set: a float32 (or float64) tensor of 1 element (per tensor) or one element per
 *    channel (per channel: dim 0 of a weight, dim 1 of an activation), every value positive and
 *    finite. Anything else (zero, negative, NaN, an integer tensor, the wrong element count) is
 *    an error naming the site.
 *  - `zero_point`: NULL (read as 0) or a float tensor with as many elements as `scale`, every
 *    value finite and within [quant_min, quant_max] (the export rounds it to an integer).
 *  - quant_min < quant_max once defaulted (both 0: the full range of quant_dtype). */
typedef struct shrink_calibration {
  uint32_t struct_size;
  shrink_tensor* scale;      /* 1 element or one per channel; NULL: the site stays in float */
  shrink_tensor* zero_point; /* as many elements as scale; NULL when symmetric without zero point */
  int32_t quant_bits;
  char quant_dtype[16];  /* "int8", "uint8", "int4", ... */
  char quant_scheme[32]; /* "affine", "symmetric", ... */
  double tracked_min;    /* NaN when not tracked */
  double tracked_max;    /* NaN when not tracked */
  /* since ABI 1.1: the integer range the fake-quant clamps to, e.g. -127 / 127 for NNI int8;
     both 0 (or absent): the full range of quant_dtype */
  int64_t quant_min;
  int64_t quant_max;
} shrink_calibration;

/* Result of create: the instance and the facets it supports. */
typedef struct shrink_instance {
  uint32_t struct_size;
  void* handle;   /* plugin-owned; passed back to every call; freed by destroy */
  uint32_t flags; /* SHRINK_INSTANCE_* below */
} shrink_instance;

enum {
  SHRINK_INSTANCE_HAS_QUANT_GRAD = 1u << 0, /* quant_backward may be called for this instance */
  /* Since ABI 1.1: quantize_* and quant_backward accept tensors in any non-overlapping dense
   * layout (channels-last activations, say) and return results in the layout of their input, with
   * quant_backward's grad_output in the layout of its tensor. Without it the host passes
   * contiguous (row-major) tensors, copying where needed. */
  SHRINK_INSTANCE_ANY_DENSE_LAYOUT = 1u << 1
};

/* Quantizer (NNI's Quantizer). `site` is the plugin's per-site context returned by setup_site.
 * `state` holds the site's declared state tensors in declaration order; buffers may be updated
 * in place. `*out` receives a new reference: a tensor of the input's shape and dtype (float32 in
 * float32 models). The host checks shape and dtype after every call, and finiteness in
 * `shrink check`, in the plan check before training and under `shrink run --check-plugins`; a
 * mismatch is an error naming the plugin, the site and the call. */
typedef struct shrink_quantizer_api {
  uint32_t struct_size;
  /* Required: setup_site .. quantize_output. Optional (a reader checks struct_size and NULL):
   * update_epoch, step, export_site; destroy_site may be NULL when sites hold nothing. */
  shrink_status (*setup_site)(void* self, const shrink_site_info* info,
                              const shrink_state_declarer* declarer, shrink_state_builder* builder,
                              void** out_site, shrink_error* error);
  void (*destroy_site)(void* self, void* site);
  shrink_status (*quantize_weight)(void* self, void* site, const shrink_tensor* weight,
                                   shrink_tensor* const* state, uint32_t state_count,
                                   shrink_tensor** out, shrink_error* error);
  shrink_status (*quantize_input)(void* self, void* site, const shrink_tensor* input,
                                  shrink_tensor* const* state, uint32_t state_count,
                                  shrink_tensor** out, shrink_error* error);
  shrink_status (*quantize_output)(void* self, void* site, const shrink_tensor* output,
                                   shrink_tensor* const* state, uint32_t state_count,
                                   shrink_tensor** out, shrink_error* error);
  /* Called at the start of every epoch, from 0. */
  shrink_status (*update_epoch)(void* self, int32_t epoch, shrink_error* error);
  /* Called after every optimizer step. */
  shrink_status (*step)(void* self, shrink_error* error);
  /* Called once per site at export, for every site (see shrink_calibration for what it returns). */
  shrink_status (*export_site)(void* self, void* site, shrink_tensor* const* state,
                               uint32_t state_count, shrink_calibration* out, shrink_error* error);
  /* Since ABI 1.2, optional: the calibration forwards are over; turn what they recorded for `site`
   * into its quantization parameters (written to its state). Called once per site, in site order,
   * after each calibration pass. */
  shrink_status (*end_calibration)(void* self, void* site, shrink_tensor* const* state,
                                   uint32_t state_count, shrink_error* error);
} shrink_quantizer_api;

/* QuantGrad (NNI's QuantGrad): the backward of a quantize call. `tensor` is the input of the
 * quantize call, `grad_output` the gradient of its output. `*out_grad_input` receives a new
 * reference. `out_state_grads` has `state_count` slots, all NULL on entry; the plugin may fill the
 * slots of PARAMETER state with new references to their gradients. Without a QuantGrad the host
 * uses the straight-through estimator (grad_input = grad_output). */
typedef struct shrink_quant_grad_api {
  uint32_t struct_size;
  shrink_status (*quant_backward)(void* self, void* site, shrink_quant_type quant_type,
                                  const shrink_tensor* tensor, const shrink_tensor* grad_output,
                                  shrink_tensor* const* state, uint32_t state_count,
                                  shrink_tensor** out_grad_input, shrink_tensor** out_state_grads,
                                  shrink_error* error);
} shrink_quant_grad_api;

/* What a masker sees of one wrapped module (NNI's wrapper). Borrowed for the call. */
typedef struct shrink_wrapper_info {
  uint32_t struct_size;
  const char* module_name;
  const char* module_type;
  const shrink_options* config;
  const shrink_tensor* weight;
  const shrink_tensor* bias; /* NULL when the module has no bias */
  /* Since ABI 1.3: the weight's gradient of the latest training step, in `observe` only; NULL
   * elsewhere. */
  const shrink_tensor* weight_grad;
  /* Since ABI 1.4: in `observe` only, for a pruner whose `observes_outputs` says so (NULL
   * elsewhere): [N, C], for each sample n of the latest training step and each output channel c
   * of the wrapped op, the sum over the channel's positions of output * dLoss/doutput (first-order
   * Taylor: the loss change if that channel of that sample were zeroed is about minus this). */
  const shrink_tensor* output_grad_product;
} shrink_wrapper_info;

/* WeightMasker (NNI's WeightMasker.calc_mask). `*out_weight_mask` receives a new reference with the
 * weight's shape, of a floating-point or bool dtype, holding 0 (pruned) and 1 (kept);
 * `*out_bias_mask` may be left NULL, or the bias's shape. Importance scores are floating point.
 * The host checks shapes and dtypes always, finiteness where quantizers' are (see above). */
typedef struct shrink_masker_api {
  uint32_t struct_size;
  shrink_status (*calc_mask)(void* self, double sparsity, const shrink_wrapper_info* wrapper,
                             int32_t wrapper_idx, shrink_tensor** out_weight_mask,
                             shrink_tensor** out_bias_mask, shrink_error* error);
  /* Since ABI 1.3, optional: how much each prunable unit of the wrapper's weight matters (higher
   * is kept longer), `*out_scores` a new reference: one score per output channel for a filter
   * masker, or the weight's shape for an unstructured one. The host ranks these across layers
   * for a global sparsity, then asks calc_mask for each layer's share. */
  shrink_status (*importance)(void* self, const shrink_wrapper_info* wrapper, int32_t wrapper_idx,
                              shrink_tensor** out_scores, shrink_error* error);
} shrink_masker_api;

/* Pruner hooks (NNI's Pruner around its masker). When masks are computed is the experiment's
 * (its stage's `schedule`), not the pruner's. */
typedef struct shrink_pruner_api {
  uint32_t struct_size;
  /* Superseded in ABI 1.5 by SHRINK_CAP_RANKS_IN_TRAINING. Hosts up to 1.4 read zero here as
   * "ranks by what it observes in training" (its masks at the end of each stretch of training),
   * whatever the name says; a host since 1.5 reads it so only from plugins built against 1.4 or
   * older (so those keep their behaviour) and reads the capability from newer ones. A plugin
   * built against 1.5 sets it to 0 exactly when it declares SHRINK_CAP_RANKS_IN_TRAINING, for
   * older hosts. */
  int32_t one_shot;
  shrink_status (*update_epoch)(void* self, int32_t epoch, shrink_error* error);
  shrink_status (*step)(void* self, shrink_error* error);
  /* Since ABI 1.3, optional: after each training step's backward (before the optimizer steps),
   * once per wrapper, with `wrapper->weight_grad` set (first-order Taylor statistics). */
  shrink_status (*observe)(void* self, const shrink_wrapper_info* wrapper, int32_t wrapper_idx,
                           shrink_error* error);
  /* Since ABI 1.3, optional: the coefficient of an L1 penalty on the wrapped weights that the host
   * adds to the training loss while the pruner's stage trains (network slimming); 0 for none. */
  shrink_status (*l1_penalty)(void* self, double* out_coefficient, shrink_error* error);
  /* Since ABI 1.4, optional: non-zero in `*out` asks the host to record each wrapped op's output
   * and its gradient while the pruner's stage trains, and to pass `output_grad_product` to
   * `observe` (costs a copy of each output per step; asked once, when the stage starts). */
  shrink_status (*observes_outputs)(void* self, int32_t* out, shrink_error* error);
} shrink_pruner_api;

/* Since ABI 1.6: a data source, one instance per split. `create` receives the keys of the
 * experiment's `data:` mapping that the algorithm declares in `data_keys` (as given), `path` and
 * `test_path` when given (resolved to absolute paths), and `split` = "train" or "test". */
#define SHRINK_DATA_SOURCE_MAX_DIMS 8
typedef struct shrink_data_source_api {
  uint32_t struct_size;
  /* The split's samples: how many, and the shape of every input ([C, H, W] or [H, W];
   * `*out_ndim` <= SHRINK_DATA_SOURCE_MAX_DIMS sizes written to `out_shape`). Called once, after
   * create. */
  shrink_status (*describe)(void* self, int64_t* out_count, int32_t* out_ndim, int64_t* out_shape,
                            shrink_error* error);
  /* Sample `index` (0 <= index < count): `*out_input` a new reference to a tensor of the described
   * shape, uint8 (pixel values 0..255, scaled to [0, 1] by the host) or float32 (taken as it is),
   * and `*out_label` its class index. Called from several threads at once: it must be safe to. The
   * host checks the shape, the dtype and the label's range, and names the plugin and the sample
   * when one is wrong. */
  shrink_status (*get)(void* self, int64_t index, shrink_tensor** out_input, int64_t* out_label,
                       shrink_error* error);
} shrink_data_source_api;

typedef struct shrink_algorithm_descriptor {
  uint32_t struct_size;
  const char* name;        /* unique across all loaded plugins: "naive", "qat", "l1_norm" */
  const char* description; /* one line */
  shrink_algorithm_kind kinds;
  shrink_capabilities capabilities;

  /* Creates an instance from its options (the YAML mapping of the compress stage). */
  shrink_status (*create)(const shrink_options* options, shrink_instance* out, shrink_error* error);
  void (*destroy)(void* self);

  /* Facets; NULL when the algorithm lacks them. */
  const shrink_quantizer_api* quantizer;
  const shrink_quant_grad_api* quant_grad;
  const shrink_masker_api* masker;
  const shrink_pruner_api* pruner;

  /* Optional (a reader checks struct_size): comma-separated op types the algorithm handles
   * ("Conv2d,Linear"); NULL or absent for any. */
  const char* supported_op_types;

  /* Since ABI 1.5, optional: the per-site config keys the algorithm reads besides the framework's
   * (quant_dtype, quant_bits, quant_scheme, granularity, the pruning ratios, ...), as a
   * NULL-terminated array of names, e.g. {"quant_start_step", NULL}. A config_list entry of a
   * stage using this algorithm may give them (at its top level or in target_settings); any other
   * key is refused before anything runs with the file, line and column, the framework's keys and
   * these. NULL or absent: none. */
  const char* const* site_keys;

  /* Since ABI 1.6: a data source's facet (kinds has SHRINK_KIND_DATA_SOURCE), and the keys of
   * the experiment's `data:` mapping it reads besides the framework's (format, path, test_path,
   * batch_size, transforms, workers, ...), as a NULL-terminated array; a key neither declares is
   * refused with its file, line and column. */
  const shrink_data_source_api* data_source;
  const char* const* data_keys;
} shrink_algorithm_descriptor;

typedef struct shrink_plugin_descriptor {
  uint32_t struct_size;
  uint16_t abi_major;  /* SHRINK_ABI_VERSION_MAJOR the plugin was built against */
  uint16_t abi_minor;  /* SHRINK_ABI_VERSION_MINOR the plugin was built against */
  const char* name;    /* the plugin (library) name */
  const char* version; /* the plugin's own version, e.g. "1.2.0" */
  /* Build fingerprint, ';'-separated key=value pairs: "torch=1.13.1;cxx11_abi=1;compiler=gcc 12.2".
   * A plugin that does not link LibTorch omits the torch and cxx11_abi keys. The host refuses a
   * plugin whose torch version or C++ ABI differs from its own. */
  const char* build_tag;
  uint32_t algorithm_count;
  /* Array of `algorithm_count` pointers (pointers, so that each descriptor's own struct_size
   * governs its layout). */
  const shrink_algorithm_descriptor* const* algorithms;
} shrink_plugin_descriptor;

typedef const shrink_plugin_descriptor* (*shrink_plugin_entry_fn)(const shrink_host_api* host);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SHRINK_PLUGIN_API_H */
