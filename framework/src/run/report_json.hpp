// JSON for the run's output files (private to run/).
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <filesystem>

namespace YAML {
class Node;
}

namespace shrink {

class PruningStage;

// A YAML tree as JSON: quoted scalars stay strings, others become numbers or booleans when they
// read as one.
nlohmann::json yaml_to_json(const YAML::Node& node);
// A tensor's values: a number for one element, a flat list otherwise, null when undefined.
nlohmann::json tensor_json(const at::Tensor& t);
nlohmann::json number_or_null(double v);  // null for NaN and inf
// Throws shrink::Error naming the file when it cannot be written.
void write_json(const std::filesystem::path& file, const nlohmann::json& value);

// Sparsity of each pruned op's weight mask now, and how many of its output channels are gone
// (every weight of the channel masked); the BatchNorms that follow.
nlohmann::json pruning_table(const PruningStage& stage);

}  // namespace shrink
