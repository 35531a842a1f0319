// `shrink check ALGO`: a plugin author's smoke test of a whole plugin.
#pragma once

#include <string>
#include <vector>

namespace shrink_cli {

struct CheckArgs {
  std::string algorithm;
  std::vector<std::string> options;      // the stage's options, key=value
  std::vector<std::string> site_config;  // per-site config keys, key=value (--site)
  double sparsity = 0.5;                 // for a masker
};

// Loads plugins from `plugin_paths` and the usual search path, runs ALGO once with every check on
// (see the command's help) and prints what it did; throws shrink::Error with one line naming the
// plugin, the site and the call when something is wrong.
int run_check(const std::vector<std::string>& plugin_paths, const CheckArgs& args);

}  // namespace shrink_cli
