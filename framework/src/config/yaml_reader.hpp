// Reading YAML text into nodes, with the checks yaml-cpp leaves out (private to config/).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

namespace shrink::detail {

// Parses the file at `path` (or `text`, named `name` in messages). Throws shrink::Error in one
// line: "<file>:<line>:<col>: malformed YAML: ..." for a syntax error, "<path>: cannot open the
// file" (or a folder, or over 16 MiB), "<file>:<line>:<col>: <key>: given twice (first at
// <line>:<col>)" for a mapping that gives a key twice at any depth (yaml-cpp keeps both, and a
// lookup would see only the first), a key that is a list or mapping, and a document that its
// aliases expand past a million values.
YAML::Node load_yaml_file(const std::string& path);
YAML::Node load_yaml_text(const std::string& text, const std::string& name);

}  // namespace shrink::detail
