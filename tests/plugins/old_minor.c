/* A plugin whose structs are smaller than the host's, as one built against an older minor version
 * of the ABI is: the algorithm descriptor stops before `supported_op_types` and the quantizer table
 * stops before `update_epoch`. The host must load it, read the missing fields as absent, and run
 * it.
 *
 * "old_scale" multiplies weights by 0.5. */
#include <shrink/plugin_api.h>

#include <stddef.h>

static const shrink_host_api* g_host = NULL;

static shrink_status create(const shrink_options* options, shrink_instance* out,
                            shrink_error* error) {
  (void)options;
  (void)error;
  out->handle = (void*)&g_host;
  out->flags = 0;
  return SHRINK_STATUS_OK;
}

static void destroy(void* self) { (void)self; }

static shrink_status setup_site(void* self, const shrink_site_info* info,
                                const shrink_state_declarer* declarer,
                                shrink_state_builder* builder, void** out_site,
                                shrink_error* error) {
  (void)self;
  (void)info;
  (void)declarer;
  (void)builder;
  (void)error;
  *out_site = NULL;
  return SHRINK_STATUS_OK;
}

static shrink_status halve(void* self, void* site, const shrink_tensor* x,
                           shrink_tensor* const* state, uint32_t state_count, shrink_tensor** out,
                           shrink_error* error) {
  (void)self;
  (void)site;
  (void)state;
  (void)state_count;
  shrink_tensor* y = NULL;
  shrink_status status = g_host->tensor_clone(x, &y, error);
  if (status != SHRINK_STATUS_OK) return status;
  float* data = (float*)g_host->tensor_data(y);
  int64_t n = g_host->tensor_numel(y);
  for (int64_t i = 0; i < n; ++i) data[i] *= 0.5f;
  *out = y;
  return SHRINK_STATUS_OK;
}

/* A full-size table, but struct_size says it ends before update_epoch. */
static const shrink_quantizer_api kQuantizer = {offsetof(shrink_quantizer_api, update_epoch),
                                                setup_site,
                                                NULL,
                                                halve,
                                                halve,
                                                halve,
                                                NULL,
                                                NULL,
                                                NULL};

static const shrink_algorithm_descriptor kAlgorithm = {
    offsetof(shrink_algorithm_descriptor, supported_op_types),
    "old_scale",
    "Halves weights (built with smaller structs)",
    SHRINK_KIND_QUANTIZER,
    0,
    create,
    destroy,
    &kQuantizer,
    NULL,
    NULL,
    NULL,
    "never read: beyond struct_size"};

static const shrink_algorithm_descriptor* const kAlgorithms[] = {&kAlgorithm};

static const shrink_plugin_descriptor kPlugin = {sizeof(shrink_plugin_descriptor),
                                                 SHRINK_ABI_VERSION_MAJOR,
                                                 0,
                                                 "old_minor",
                                                 "0.1.0",
                                                 "c",
                                                 1,
                                                 kAlgorithms};

SHRINK_PLUGIN_EXPORT const shrink_plugin_descriptor* shrink_plugin_entry(
    const shrink_host_api* host) {
  g_host = host;
  return &kPlugin;
}
