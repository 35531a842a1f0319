// The table of host functions handed to every plugin's entry point.
#pragma once

#include <shrink/plugin_api.h>

namespace shrink {

// The host API, valid for the life of the process.
const shrink_host_api* host_api();

}  // namespace shrink
