#include <shrink/core/options.hpp>

namespace shrink {

void Options::set(const std::string& key, const std::string& value) {
  for (auto& kv : entries) {
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  }
  entries.emplace_back(key, value);
}

const std::string* Options::find(const std::string& key) const {
  for (const auto& kv : entries) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

OptionsView::OptionsView(const Options& options) {
  kv_.reserve(options.entries.size());
  for (const auto& kv : options.entries) kv_.push_back({kv.first.c_str(), kv.second.c_str()});
  view_.struct_size = sizeof(shrink_options);
  view_.entries = kv_.data();
  view_.count = static_cast<uint32_t>(kv_.size());
  view_.text = options.text.c_str();
}

}  // namespace shrink
