// Positions and lists in the one-line messages about YAML input (experiments, config_lists).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace shrink::detail {

// "file:line:column" of a node, 1-based; just "file" for a node without a position.
inline std::string yaml_mark(const std::string& file, const YAML::Node& node) {
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
