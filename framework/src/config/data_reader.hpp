// The `data.transforms` of an experiment (private to config/).
#pragma once

#include <shrink/config/data_options.hpp>

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace shrink::detail {

// `node`: a list of transforms (the training split's; evaluation gets their deterministic
// counterparts) or a mapping {train: [...], test: [...]}. Fills both lists of `data`; an unknown
// transform, a bad value or a random transform in the test list is one line naming file, line,
// column and key.
void read_transforms(const YAML::Node& node, const std::string& file, DataOptions& data);

class MapReader;

// The old keys of `data:` (`resize`, `channels`, `normalize`, read from `data`) as the transforms
// they mean, for both splits; messages about them name the key.
void read_legacy_transforms(const MapReader& data_keys, const std::string& file, DataOptions& data);

}  // namespace shrink::detail
