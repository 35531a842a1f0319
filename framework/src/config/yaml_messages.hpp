// Positions and lists in the one-line messages about YAML input (experiments, config_lists).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <utility>
#include <vector>

namespace shrink::detail {

// Nodes that came from `--set` values (and the keys `--set` created), each with its override's
// text: a message about one names the override, not a position in the file. Filled while
// Experiment::load reads an experiment (OverrideScope), on this thread only.
inline std::vector<std::pair<YAML::Node, std::string>>& override_origins() {
  thread_local std::vector<std::pair<YAML::Node, std::string>> origins;
  return origins;
}

// Clears the origins when the load that recorded them ends.
class OverrideScope {
 public:
  OverrideScope() { override_origins().clear(); }
  ~OverrideScope() { override_origins().clear(); }
  OverrideScope(const OverrideScope&) = delete;
  OverrideScope& operator=(const OverrideScope&) = delete;
};

// Records `node` and everything under it (keys included) as given by `assignment`.
inline void record_override(const YAML::Node& node, const std::string& assignment) {
  override_origins().emplace_back(node, assignment);
  if (node.IsMap()) {
    for (const auto& kv : node) {
      override_origins().emplace_back(kv.first, assignment);
      record_override(kv.second, assignment);
    }
  } else if (node.IsSequence()) {
    for (const auto& item : node) record_override(item, assignment);
  }
}

// The `--set` assignment that gave `node`, or nullptr when it comes from the file.
inline const std::string* override_of(const YAML::Node& node) {
  for (const auto& origin : override_origins()) {
    try {
      if (origin.first.is(node)) return &origin.second;
    } catch (const YAML::Exception&) {
      // an invalid (missing) node comes from nowhere
    }
  }
  return nullptr;
}

// "file:line:column" of a node, 1-based; just "file" for a node without a position; "--set
// 'key=value'" for a node an override gave.
inline std::string yaml_mark(const std::string& file, const YAML::Node& node) {
  if (const std::string* assignment = override_of(node)) return "--set '" + *assignment + "'";
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0) return file;
  return file + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

// "file:line:column: malformed YAML: what" for a parse error.
inline std::string yaml_parse_error(const std::string& file, const YAML::Exception& e) {
  return file + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
         ": malformed YAML: " + e.msg;
}

inline std::string join(const std::vector<std::string>& items, const char* separator = ", ") {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

}  // namespace shrink::detail
