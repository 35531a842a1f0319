/* Broken on purpose: claims the next major ABI version. The host must refuse it by name. */
#include <shrink/plugin_api.h>

static const shrink_plugin_descriptor kPlugin = {sizeof(shrink_plugin_descriptor),
                                                 SHRINK_ABI_VERSION_MAJOR + 1,
                                                 0,
                                                 "wrong_abi",
                                                 "9.9.9",
                                                 "c",
                                                 0,
                                                 NULL};

SHRINK_PLUGIN_EXPORT const shrink_plugin_descriptor* shrink_plugin_entry(
    const shrink_host_api* host) {
  (void)host;
  return &kPlugin;
}
