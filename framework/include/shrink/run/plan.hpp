// The plan of a run: every compress stage checked against the model before anything trains (its
// plugin, its options, every site or op it plans, on a throwaway copy of the model), and the
// resolved pipeline as `shrink run --print-plan` prints it.
#pragma once

#include <shrink/run/context.hpp>

#include <cstddef>
#include <iosfwd>
#include <string>
#include <vector>

namespace shrink {

class Model;

// Throws shrink::Error, naming the stage and the file:line:column of what is wrong.
std::vector<CheckedStage> check_stages(const Experiment& experiment, const Model& model,
                                       PluginRegistry& registry);

// "compress[i]": how messages, passes and the report name stage `i`.
std::string stage_name(std::size_t i);

// A pruner that ranks by what it observes in training (taylor): its masks come at the end of
// each stretch of training, not the start.
bool ranks_in_training(const AlgorithmInfo& algorithm);

void print_plan(const Experiment& experiment, const Model& model,
                const std::vector<CheckedStage>& stages, std::ostream& os);

}  // namespace shrink
