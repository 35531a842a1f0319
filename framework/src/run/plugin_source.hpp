// A data-source plugin as the loader's Source (private to run/).
#pragma once

#include <shrink/config/data_options.hpp>
#include <shrink/data/source.hpp>
#include <shrink/host/plugin_registry.hpp>

#include <memory>

namespace shrink {

// The instance of data.format's data-source plugin for one split, created from the keys of
// `data:` it declares (a key neither the framework's nor the plugin's is refused with its
// file:line:column). Throws shrink::Error when no loaded plugin provides the format.
std::shared_ptr<const Source> open_plugin_source(const DataOptions& options, bool train,
                                                 PluginRegistry& registry);

}  // namespace shrink
