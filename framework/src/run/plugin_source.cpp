#include "run/plugin_source.hpp"

#include <shrink/core/error.hpp>
#include <shrink/host/data_source_instance.hpp>

#include <algorithm>
#include <sstream>

namespace shrink {
namespace {

class PluginSource : public Source {
 public:
  PluginSource(const AlgorithmInfo& algorithm, const Options& options)
      : instance_(algorithm, options) {}
  int64_t size() const override { return instance_.size(); }
  Sample get(int64_t i) const override {
    auto [input, label] = instance_.get(i);
    return {input, label};
  }
  std::string name(int64_t i) const override {
    return instance_.algorithm().display_name() + ", sample " + std::to_string(i);
  }
  bool decodes() const override { return true; }

 private:
  DataSourceInstance instance_;
};

std::string data_sources(const PluginRegistry& registry) {
  std::string out;
  for (const auto& plugin : registry.plugins()) {
    for (const AlgorithmInfo& a : plugin->algorithms) {
      if (a.is_data_source()) out += (out.empty() ? "" : ", ") + a.name;
    }
  }
  return out.empty() ? "none loaded" : out;
}

void check_keys(const DataOptions& o, const AlgorithmInfo& algorithm) {
  for (std::size_t i = 0; i < o.plugin_keys.size(); ++i) {
    const std::string& key = o.plugin_keys[i].first;
    const std::string top = key.substr(0, key.find('.'));
    if (std::find(algorithm.data_keys.begin(), algorithm.data_keys.end(), top) !=
        algorithm.data_keys.end()) {
      continue;
    }
    std::string declared;
    for (const std::string& k : algorithm.data_keys) declared += (declared.empty() ? "" : ", ") + k;
    throw Error(o.plugin_key_places[i] + ": data." + top + ": unknown key (" +
                algorithm.display_name() + " reads: " + (declared.empty() ? "none" : declared) +
                ")");
  }
}

}  // namespace

std::shared_ptr<const Source> open_plugin_source(const DataOptions& o, bool train,
                                                 PluginRegistry& registry) {
  const AlgorithmInfo* algorithm = registry.find(o.format);
  SHRINK_CHECK(algorithm != nullptr && algorithm->is_data_source(),
               o.where << ": data.format: '" << o.format
                       << "' is neither a built-in format (idx, tensors, folder) nor a data source "
                          "of the loaded plugins ("
                       << data_sources(registry) << ")");
  check_keys(o, *algorithm);
  Options options;
  for (const auto& [key, value] : o.plugin_keys) options.set(key, value);
  if (!o.path.empty()) options.set("path", o.path);
  if (!o.test_path.empty()) options.set("test_path", o.test_path);
  options.set("split", train ? "train" : "test");
  return std::make_shared<PluginSource>(*algorithm, options);
}

}  // namespace shrink
