/* A quantizer plugin in plain C built against ABI 1.5: it reads its borrowed input through the
 * host's const accessor (tensor_const_data) and declares a per-site config key of its own.
 *
 * "c_clip" clips float32 weights to [-clip, clip], `clip` being the site's config key (default 1).
 */
#include <shrink/plugin_api.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const shrink_host_api* g_host = NULL;

static void set_error(shrink_error* error, const char* message) {
  snprintf(error->message, SHRINK_ERROR_MESSAGE_CAPACITY, "%s", message);
}

static shrink_status create(const shrink_options* options, shrink_instance* out,
                            shrink_error* error) {
  if (options->count > 0) {
    set_error(error, "c_clip takes no options (its key `clip` goes in the config_list)");
    return SHRINK_STATUS_INVALID_ARGUMENT;
  }
  out->handle = (void*)&g_host;
  out->flags = 0;
  return SHRINK_STATUS_OK;
}

static void destroy(void* self) { (void)self; }

/* The site's context: its clip bound, read once from the config. */
static shrink_status setup_site(void* self, const shrink_site_info* info,
                                const shrink_state_declarer* declarer,
                                shrink_state_builder* builder, void** out_site,
                                shrink_error* error) {
  (void)self;
  (void)declarer;
  (void)builder;
  if (info->quant_type != SHRINK_QUANT_WEIGHT) {
    set_error(error, "c_clip quantizes weights only");
    return SHRINK_STATUS_UNSUPPORTED;
  }
  float* clip = (float*)malloc(sizeof(float));
  if (clip == NULL) return SHRINK_STATUS_OUT_OF_MEMORY;
  *clip = 1.0f;
  for (uint32_t i = 0; i < info->config->count; ++i) {
    if (strcmp(info->config->entries[i].key, "clip") == 0)
      *clip = strtof(info->config->entries[i].value, NULL);
  }
  if (!(*clip > 0)) {
    free(clip);
    set_error(error, "clip must be a positive number");
    return SHRINK_STATUS_INVALID_ARGUMENT;
  }
  *out_site = clip;
  return SHRINK_STATUS_OK;
}

static void destroy_site(void* self, void* site) {
  (void)self;
  free(site);
}

static shrink_status clip_weight(void* self, void* site, const shrink_tensor* weight,
                                 shrink_tensor* const* state, uint32_t state_count,
                                 shrink_tensor** out, shrink_error* error) {
  (void)self;
  (void)state;
  (void)state_count;
  const float clip = *(const float*)site;
  int64_t shape[8];
  int32_t ndim = g_host->tensor_ndim(weight);
  if (g_host->tensor_dtype(weight) != SHRINK_DTYPE_FLOAT32 || ndim > 8) {
    set_error(error, "c_clip handles float32 tensors of up to 8 dimensions");
    return SHRINK_STATUS_UNSUPPORTED;
  }
  g_host->tensor_shape(weight, shape);
  shrink_tensor* result = NULL;
  shrink_status status = g_host->tensor_create(SHRINK_DTYPE_FLOAT32, ndim, shape, &result, error);
  if (status != SHRINK_STATUS_OK) return status;
  const float* src = (const float*)g_host->tensor_const_data(weight); /* borrowed, read only */
  float* dst = (float*)g_host->tensor_data(result);
  for (int64_t i = 0, n = g_host->tensor_numel(weight); i < n; ++i) {
    dst[i] = src[i] > clip ? clip : (src[i] < -clip ? -clip : src[i]);
  }
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
  set_error(error, "c_clip quantizes weights only");
  return SHRINK_STATUS_UNSUPPORTED;
}

static const shrink_quantizer_api kQuantizer = {sizeof(shrink_quantizer_api),
                                                setup_site,
                                                destroy_site,
                                                clip_weight,
                                                not_weight,
                                                not_weight,
                                                NULL,
                                                NULL,
                                                NULL,
                                                NULL};

static const char* const kSiteKeys[] = {"clip", NULL};

static const shrink_algorithm_descriptor kAlgorithm = {
    sizeof(shrink_algorithm_descriptor),
    "c_clip",
    "Clips weights to [-clip, clip] (a C plugin with a site key)",
    SHRINK_KIND_QUANTIZER,
    SHRINK_CAP_TRAINING,
    create,
    destroy,
    &kQuantizer,
    NULL,
    NULL,
    NULL,
    NULL,
    kSiteKeys};

static const shrink_algorithm_descriptor* const kAlgorithms[] = {&kAlgorithm};

static const shrink_plugin_descriptor kPlugin = {sizeof(shrink_plugin_descriptor),
                                                 SHRINK_ABI_VERSION_MAJOR,
                                                 SHRINK_ABI_VERSION_MINOR,
                                                 "c_clip",
                                                 "1.0.0",
                                                 "c",
                                                 1,
                                                 kAlgorithms};

SHRINK_PLUGIN_EXPORT const shrink_plugin_descriptor* shrink_plugin_entry(
    const shrink_host_api* host) {
  g_host = host;
  return &kPlugin;
}
