/* Broken on purpose: claims to be built against another LibTorch. The host must refuse it, and a
 * run that names its algorithm must say which file provides it and why it was refused. */
#include <shrink/plugin_api.h>

#include <stddef.h>

static shrink_status create(const shrink_options* options, shrink_instance* out,
                            shrink_error* error) {
  (void)options;
  (void)out;
  (void)error;
  return SHRINK_STATUS_ERROR;
}

static void destroy(void* self) { (void)self; }

static const shrink_masker_api kMasker = {sizeof(shrink_masker_api), NULL, NULL};

static const shrink_algorithm_descriptor kAlgorithm = {sizeof(shrink_algorithm_descriptor),
                                                       "other_torch_pruner",
                                                       "Never loads (test only)",
                                                       SHRINK_KIND_WEIGHT_MASKER,
                                                       0,
                                                       create,
                                                       destroy,
                                                       NULL,
                                                       NULL,
                                                       &kMasker,
                                                       NULL,
                                                       NULL,
                                                       NULL};

static const shrink_algorithm_descriptor* const kAlgorithms[] = {&kAlgorithm};

static const shrink_plugin_descriptor kPlugin = {sizeof(shrink_plugin_descriptor),
                                                 SHRINK_ABI_VERSION_MAJOR,
                                                 SHRINK_ABI_VERSION_MINOR,
                                                 "wrong_torch",
                                                 "0.0.1",
                                                 "torch=0.0.1;cxx11_abi=1;compiler=gcc 12.2",
                                                 1,
                                                 kAlgorithms};

SHRINK_PLUGIN_EXPORT const shrink_plugin_descriptor* shrink_plugin_entry(
    const shrink_host_api* host) {
  (void)host;
  return &kPlugin;
}
