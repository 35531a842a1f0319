/* A Shrink quantizer plugin in plain C, from the template installed with Shrink
 * (share/shrink/templates/c_plugin). The whole contract is <shrink/plugin_api.h>.
 *
 * "my_c_round": weights to `quant_bits`-bit symmetric integers, per tensor, as NNI's Naive
 * quantizer does:
 *   scale = max|w| / (2^(bits-1) - 1),  w_hat = round(w / scale) * scale
 * The scale is a buffer of the site's state (saved in checkpoints) and is exported, so the site
 * becomes an int8 op in model_int8.pt. The per-site key `truncate` (declared below, so a
 * config_list may give it) rounds towards zero instead, as NNI's int8 cast does. */
#include <shrink/plugin_api.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const shrink_host_api* g_host = NULL;

/* What one site keeps besides its declared state: its settings, read once in setup_site. */
typedef struct site_settings {
  int bits;
  int truncate;
} site_settings;

static void set_error(shrink_error* error, const char* message) {
  snprintf(error->message, SHRINK_ERROR_MESSAGE_CAPACITY, "%s", message);
}

static const char* config_value(const shrink_options* config, const char* key) {
  for (uint32_t i = 0; config != NULL && i < config->count; ++i) {
    if (strcmp(config->entries[i].key, key) == 0) return config->entries[i].value;
  }
  return NULL;
}

static shrink_status create(const shrink_options* options, shrink_instance* out,
                            shrink_error* error) {
  if (options->count > 0) {
    set_error(error, "my_c_round takes no options");
    return SHRINK_STATUS_INVALID_ARGUMENT;
  }
  out->handle = (void*)&g_host; /* no per-instance state */
  out->flags = 0;
  return SHRINK_STATUS_OK;
}

static void destroy(void* self) { (void)self; }

static shrink_status setup_site(void* self, const shrink_site_info* info,
                                const shrink_state_declarer* declarer,
                                shrink_state_builder* builder, void** out_site,
                                shrink_error* error) {
  (void)self;
  if (info->quant_type != SHRINK_QUANT_WEIGHT) {
    set_error(error, "my_c_round quantizes weights only");
    return SHRINK_STATUS_UNSUPPORTED;
  }
  const char* bits = config_value(info->config, "quant_bits");
  const char* truncate = config_value(info->config, "truncate");
  site_settings* s = (site_settings*)malloc(sizeof(site_settings));
  if (s == NULL) return SHRINK_STATUS_OUT_OF_MEMORY;
  s->bits = bits ? atoi(bits) : 8;
  s->truncate = truncate != NULL && strcmp(truncate, "true") == 0;
  if (s->bits < 2 || s->bits > 8) {
    free(s);
    set_error(error, "my_c_round supports 2 to 8 bits");
    return SHRINK_STATUS_UNSUPPORTED;
  }
  /* One buffer: the scale, a float32 scalar, 0 until the first quantize call. */
  shrink_tensor* scale = NULL;
  shrink_status status = g_host->tensor_create(SHRINK_DTYPE_FLOAT32, 0, NULL, &scale, error);
  if (status == SHRINK_STATUS_OK) {
    status = declarer->declare(builder, "scale", SHRINK_STATE_BUFFER, scale, error);
    g_host->tensor_release(scale); /* the host keeps its own reference */
  }
  if (status != SHRINK_STATUS_OK) {
    free(s);
    return status;
  }
  *out_site = s;
  return SHRINK_STATUS_OK;
}

static void destroy_site(void* self, void* site) {
  (void)self;
  free(site);
}

static shrink_status quantize_weight(void* self, void* site, const shrink_tensor* weight,
                                     shrink_tensor* const* state, uint32_t state_count,
                                     shrink_tensor** out, shrink_error* error) {
  (void)self;
  const site_settings* s = (const site_settings*)site;
  int64_t shape[8];
  const int32_t ndim = g_host->tensor_ndim(weight);
  if (state_count != 1 || g_host->tensor_dtype(weight) != SHRINK_DTYPE_FLOAT32 || ndim > 8) {
    set_error(error, "my_c_round handles float32 weights of up to 8 dimensions");
    return SHRINK_STATUS_UNSUPPORTED;
  }
  /* The input is borrowed and read-only: tensor_const_data (ABI 1.5). */
  const float* w = (const float*)g_host->tensor_const_data(weight);
  const int64_t n = g_host->tensor_numel(weight);
  const float qmax = (float)((1 << (s->bits - 1)) - 1);
  float max_abs = 0.0f;
  for (int64_t i = 0; i < n; ++i) max_abs = fabsf(w[i]) > max_abs ? fabsf(w[i]) : max_abs;
  float* scale = (float*)g_host->tensor_data(state[0]); /* state is updated in place */
  *scale = max_abs / qmax;
  /* The result: a new tensor of the input's shape and dtype (the host checks both). */
  g_host->tensor_shape(weight, shape);
  shrink_tensor* result = NULL;
  shrink_status status = g_host->tensor_create(SHRINK_DTYPE_FLOAT32, ndim, shape, &result, error);
  if (status != SHRINK_STATUS_OK) return status;
  float* y = (float*)g_host->tensor_data(result);
  for (int64_t i = 0; i < n; ++i) {
    const float q = *scale > 0 ? w[i] / *scale : 0.0f;
    y[i] = (s->truncate ? truncf(q) : roundf(q)) * *scale;
  }
  *out = result;
  return SHRINK_STATUS_OK;
}

static shrink_status not_a_weight(void* self, void* site, const shrink_tensor* x,
                                  shrink_tensor* const* state, uint32_t state_count,
                                  shrink_tensor** out, shrink_error* error) {
  (void)self;
  (void)site;
  (void)x;
  (void)state;
  (void)state_count;
  (void)out;
  set_error(error, "my_c_round quantizes weights only");
  return SHRINK_STATUS_UNSUPPORTED;
}

/* Called for every site at export. No scale (NULL) leaves the site in float; a scale is a float
 * tensor of 1 element (or one per channel), positive and finite. */
static shrink_status export_site(void* self, void* site, shrink_tensor* const* state,
                                 uint32_t state_count, shrink_calibration* out,
                                 shrink_error* error) {
  (void)self;
  const site_settings* s = (const site_settings*)site;
  if (state_count != 1) {
    set_error(error, "my_c_round: unexpected state");
    return SHRINK_STATUS_ERROR;
  }
  out->scale = NULL;
  out->zero_point = NULL;
  if (*(const float*)g_host->tensor_const_data(state[0]) > 0) {
    shrink_status status = g_host->tensor_clone(state[0], &out->scale, error);
    if (status != SHRINK_STATUS_OK) return status;
  }
  out->quant_bits = s->bits;
  snprintf(out->quant_dtype, sizeof out->quant_dtype, "int%d", s->bits);
  snprintf(out->quant_scheme, sizeof out->quant_scheme, "symmetric");
  out->tracked_min = NAN;
  out->tracked_max = NAN;
  out->quant_min = -((1 << (s->bits - 1)) - 1);
  out->quant_max = (1 << (s->bits - 1)) - 1;
  return SHRINK_STATUS_OK;
}

/* Tables: sizeof(...) as struct_size, every field this ABI version has, in order. */
static const shrink_quantizer_api kQuantizer = {sizeof(shrink_quantizer_api),
                                                setup_site,
                                                destroy_site,
                                                quantize_weight,
                                                not_a_weight,
                                                not_a_weight,
                                                NULL,
                                                NULL,
                                                export_site,
                                                NULL};

/* Per-site config keys besides the framework's (quant_bits, ...): NULL-terminated. */
static const char* const kSiteKeys[] = {"truncate", NULL};

static const shrink_algorithm_descriptor kAlgorithm = {
    sizeof(shrink_algorithm_descriptor),
    "my_c_round",
    "Weights to symmetric integers, per tensor (a C plugin from Shrink's template)",
    SHRINK_KIND_QUANTIZER,
    SHRINK_CAP_CALIBRATION | SHRINK_CAP_TRAINING | SHRINK_CAP_EXPORT,
    create,
    destroy,
    &kQuantizer,
    NULL, /* quant_grad: none, the straight-through estimator */
    NULL, /* masker */
    NULL, /* pruner */
    "Conv1d,Conv2d,Conv3d,Linear",
    kSiteKeys};

static const shrink_algorithm_descriptor* const kAlgorithms[] = {&kAlgorithm};

static const shrink_plugin_descriptor kPlugin = {sizeof(shrink_plugin_descriptor),
                                                 SHRINK_ABI_VERSION_MAJOR,
                                                 SHRINK_ABI_VERSION_MINOR,
                                                 "my_c_plugin",
                                                 "0.1.0",
                                                 "c",
                                                 1,
                                                 kAlgorithms};

/* The one exported symbol. The host calls it once; what it returns lives as long as the library. */
SHRINK_PLUGIN_EXPORT const shrink_plugin_descriptor* shrink_plugin_entry(
    const shrink_host_api* host) {
  g_host = host;
  return &kPlugin;
}
