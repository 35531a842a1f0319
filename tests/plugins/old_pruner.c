/* A pruner as one built against ABI 1.4 declares itself: `one_shot = 0` and no capability bit, the
 * way taylor said "ranks by what it observes in training" before ABI 1.5. The host must keep that
 * reading for it (AlgorithmInfo::ranks_in_training).
 *
 * "old_ranker" masks nothing: calc_mask returns ones. */
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

static shrink_status calc_mask(void* self, double sparsity, const shrink_wrapper_info* wrapper,
                               int32_t wrapper_idx, shrink_tensor** out_weight_mask,
                               shrink_tensor** out_bias_mask, shrink_error* error) {
  (void)self;
  (void)sparsity;
  (void)wrapper_idx;
  (void)out_bias_mask;
  int64_t shape[8];
  int32_t ndim = g_host->tensor_ndim(wrapper->weight);
  if (ndim > 8) return SHRINK_STATUS_UNSUPPORTED;
  g_host->tensor_shape(wrapper->weight, shape);
  shrink_tensor* mask = NULL;
  shrink_status status = g_host->tensor_create(SHRINK_DTYPE_FLOAT32, ndim, shape, &mask, error);
  if (status != SHRINK_STATUS_OK) return status;
  float* data = (float*)g_host->tensor_data(mask);
  for (int64_t i = 0, n = g_host->tensor_numel(mask); i < n; ++i) data[i] = 1.0f;
  *out_weight_mask = mask;
  return SHRINK_STATUS_OK;
}

static const shrink_masker_api kMasker = {sizeof(shrink_masker_api), calc_mask, NULL};

/* ABI 1.4's pruner table: one_shot = 0, no hooks. */
static const shrink_pruner_api kPruner = {
    offsetof(shrink_pruner_api, observes_outputs) + sizeof(void*), 0, NULL, NULL, NULL, NULL, NULL};

/* ABI 1.4's descriptor ends at supported_op_types. */
static const shrink_algorithm_descriptor kAlgorithm = {
    offsetof(shrink_algorithm_descriptor, site_keys),
    "old_ranker",
    "Masks nothing; ranks in training the ABI 1.4 way (test only)",
    SHRINK_KIND_WEIGHT_MASKER | SHRINK_KIND_PRUNER,
    0,
    create,
    destroy,
    NULL,
    NULL,
    &kMasker,
    &kPruner,
    NULL,
    NULL};

static const shrink_algorithm_descriptor* const kAlgorithms[] = {&kAlgorithm};

static const shrink_plugin_descriptor kPlugin = {sizeof(shrink_plugin_descriptor),
                                                 SHRINK_ABI_VERSION_MAJOR,
                                                 4,
                                                 "old_pruner",
                                                 "0.1.0",
                                                 "c",
                                                 1,
                                                 kAlgorithms};

SHRINK_PLUGIN_EXPORT const shrink_plugin_descriptor* shrink_plugin_entry(
    const shrink_host_api* host) {
  g_host = host;
  return &kPlugin;
}
