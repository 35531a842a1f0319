#include <shrink/core/error.hpp>
#include <shrink/run/plugin_keys.hpp>

#include <algorithm>

namespace shrink {
namespace {

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

}  // namespace

std::string allowed_keys_text(const AlgorithmInfo& algorithm) {
  const std::vector<std::string>& declared = algorithm.site_keys;
  return joined(config_list_keys()) +
         (declared.empty() ? "; '" + algorithm.name + "' declares no keys of its own"
                           : ", and '" + algorithm.name + "' declares: " + joined(declared));
}

void check_plugin_keys(const ConfigList& config, const AlgorithmInfo& algorithm,
                       const std::string& stage) {
  const std::vector<std::string>& declared = algorithm.site_keys;
  for (const ConfigEntry& e : config.entries) {
    const std::pair<std::string, std::string>* first = nullptr;  // in the order written
    for (const auto& kv : e.plugin_keys) {
      if (std::find(declared.begin(), declared.end(), kv.first) == declared.end()) {
        first = &kv;
        break;
      }
    }
    if (first == nullptr) continue;
    const std::string entry =
        (stage.empty() ? "" : stage + ".") + "config_list[" + std::to_string(e.index) + "]";
    throw Error(first->second + ": " + entry + ": unknown key '" + first->first +
                "' (allowed: " + allowed_keys_text(algorithm) + ")");
  }
}

}  // namespace shrink
