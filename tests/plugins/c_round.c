/* A quantizer plugin in plain C (compiled as C, not linked to LibTorch): proof that the ABI is C.
 *
 * "c_round" rounds float32 weights to a grid: w_hat = round(w / step) * step, with the option
 * `step` (default 0.25). It uses only the host API to read and create tensors. */
#include <shrink/plugin_api.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const shrink_host_api* g_host = NULL;

typedef struct c_round {
  float step;
} c_round;

static void set_error(shrink_error* error, const char* message) {
  snprintf(error->message, SHRINK_ERROR_MESSAGE_CAPACITY, "%s", message);
}

static shrink_status create(const shrink_options* options, shrink_instance* out,
                            shrink_error* error) {
  c_round* self = (c_round*)malloc(sizeof(c_round));
  if (self == NULL) return SHRINK_STATUS_OUT_OF_MEMORY;
  self->step = 0.25f;
  for (uint32_t i = 0; i < options->count; ++i) {
    if (strcmp(options->entries[i].key, "step") == 0) {
      char* end = NULL;
      double v = strtod(options->entries[i].value, &end);
      if (end == options->entries[i].value || *end != '\0' || !(v > 0)) {
        free(self);
        set_error(error, "option 'step' must be a positive number");
        return SHRINK_STATUS_INVALID_ARGUMENT;
      }
      self->step = (float)v;
    } else {
      char message[256];
      snprintf(message, sizeof message, "unknown option '%s' (allowed: step)",
               options->entries[i].key);
      free(self);
      set_error(error, message);
      return SHRINK_STATUS_INVALID_ARGUMENT;
    }
  }
  out->handle = self;
  out->flags = 0;
  return SHRINK_STATUS_OK;
}

static void destroy(void* self) { free(self); }

static shrink_status setup_site(void* self, const shrink_site_info* info,
                                const shrink_state_declarer* declarer,
                                shrink_state_builder* builder, void** out_site,
                                shrink_error* error) {
  (void)self;
  (void)declarer;
  (void)builder;
  if (info->quant_type != SHRINK_QUANT_WEIGHT) {
    set_error(error, "c_round quantizes weights only");
    return SHRINK_STATUS_UNSUPPORTED;
  }
  *out_site = NULL;
  return SHRINK_STATUS_OK;
}

static void destroy_site(void* self, void* site) {
  (void)self;
  (void)site;
}

static shrink_status round_weight(void* self, void* site, const shrink_tensor* weight,
                                  shrink_tensor* const* state, uint32_t state_count,
                                  shrink_tensor** out, shrink_error* error) {
  (void)site;
  (void)state;
  (void)state_count;
  const c_round* me = (const c_round*)self;
  if (g_host->tensor_dtype(weight) != SHRINK_DTYPE_FLOAT32) {
    set_error(error, "c_round handles float32 tensors only");
    return SHRINK_STATUS_UNSUPPORTED;
  }
  int32_t ndim = g_host->tensor_ndim(weight);
  int64_t shape[8];
  if (ndim > 8) {
    set_error(error, "c_round handles at most 8 dimensions");
    return SHRINK_STATUS_UNSUPPORTED;
  }
  g_host->tensor_shape(weight, shape);
  shrink_tensor* result = NULL;
  shrink_status status = g_host->tensor_create(SHRINK_DTYPE_FLOAT32, ndim, shape, &result, error);
  if (status != SHRINK_STATUS_OK) return status;
  const float* src = (const float*)g_host->tensor_data((shrink_tensor*)weight);
  float* dst = (float*)g_host->tensor_data(result);
  int64_t n = g_host->tensor_numel(weight);
  for (int64_t i = 0; i < n; ++i) dst[i] = roundf(src[i] / me->step) * me->step;
  *out = result;
  return SHRINK_STATUS_OK;
}

static shrink_status not_weight(void* self, void* site, const shrink_tensor* x,
                                shrink_tensor* const* state, uint32_t state_count,
                                shrink_tensor** out, shrink_error* error) {
  (void)self;
  (void)site;
  (void)x;
  (void)state;
  (void)state_count;
  (void)out;
  set_error(error, "c_round quantizes weights only");
  return SHRINK_STATUS_UNSUPPORTED;
}

static const shrink_quantizer_api kQuantizer = {sizeof(shrink_quantizer_api),
                                                setup_site,
                                                destroy_site,
                                                round_weight,
                                                not_weight,
                                                not_weight,
                                                NULL,
                                                NULL,
                                                NULL};

static const shrink_algorithm_descriptor kAlgorithm = {
    sizeof(shrink_algorithm_descriptor),
    "c_round",
    "Rounds weights to a fixed grid (a plugin written in C)",
    SHRINK_KIND_QUANTIZER,
    SHRINK_CAP_CALIBRATION,
    create,
    destroy,
    &kQuantizer,
    NULL,
    NULL,
    NULL,
    "Conv2d,Linear"};

static const shrink_algorithm_descriptor* const kAlgorithms[] = {&kAlgorithm};

static const shrink_plugin_descriptor kPlugin = {sizeof(shrink_plugin_descriptor),
                                                 SHRINK_ABI_VERSION_MAJOR,
                                                 SHRINK_ABI_VERSION_MINOR,
                                                 "c_round",
                                                 "1.0.0",
                                                 "c",
                                                 1,
                                                 kAlgorithms};

SHRINK_PLUGIN_EXPORT const shrink_plugin_descriptor* shrink_plugin_entry(
    const shrink_host_api* host) {
  g_host = host;
  return &kPlugin;
}
