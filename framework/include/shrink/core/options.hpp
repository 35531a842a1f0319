// Options and config entries as they cross the plugin ABI: ordered key/value text pairs.
#pragma once

#include <shrink/plugin_api.h>

#include <string>
#include <utility>
#include <vector>

namespace shrink {

// A flattened YAML mapping: nested keys joined with dots, values as YAML scalar text, sequences
// as flow YAML ("[a, b]"). `text` is the mapping as YAML, for plugins that parse it themselves.
struct Options {
  std::vector<std::pair<std::string, std::string>> entries;
  std::string text;

  void set(const std::string& key, const std::string& value);
  const std::string* find(const std::string& key) const;
};

// A C view of Options for one call; valid while both objects live and are unchanged.
class OptionsView {
 public:
  explicit OptionsView(const Options& options);
  OptionsView(const OptionsView&) = delete;
  OptionsView& operator=(const OptionsView&) = delete;
  const shrink_options* get() const { return &view_; }

 private:
  std::vector<shrink_kv> kv_;
  shrink_options view_;
};

}  // namespace shrink
