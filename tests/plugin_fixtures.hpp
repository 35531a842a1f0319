// Helpers for tests that load the plugins built for them.
#pragma once

#include "test_paths.hpp"

#include <shrink/host/plugin_registry.hpp>

#include <memory>
#include <string>
#include <vector>

namespace shrink::test {

// Folder of one test plugin set under build/test_plugins, e.g. "c_round".
inline std::string test_plugins(const std::string& folder) {
  return std::string(kTestPluginDir) + "/" + folder;
}

// A registry that searched exactly these folders (as --plugin-path would give them).
inline std::unique_ptr<PluginRegistry> registry_of(const std::vector<std::string>& folders) {
  auto registry = std::make_unique<PluginRegistry>();
  std::vector<SearchPath> paths;
  for (const auto& f : folders) paths.push_back({f, PathOrigin::kCommandLine});
  registry->discover(paths);
  return registry;
}

}  // namespace shrink::test
