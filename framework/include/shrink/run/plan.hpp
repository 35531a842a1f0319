// The plan of a run: every compress stage checked against the model before anything trains (its
// plugin, its options, every site or op it plans, on a throwaway copy of the model), and the
// resolved pipeline as `shrink run --print-plan` prints it.
#pragma once

#include <shrink/run/context.hpp>

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace shrink {

class Model;

// Throws shrink::Error, naming the stage and the file:line:column of what is wrong.
std::vector<CheckedStage> check_stages(const Experiment& experiment, const Model& model,
                                       PluginRegistry& registry);

// Runs one sample of the experiment's data (zeros of `shape`, a prepared sample's) through the
// model in eval mode: the number of classes (the model's output is [1, classes]). Throws
// shrink::Error in one line when the model does not take the data or gives no logits.
int64_t check_model_on_data(const Experiment& experiment, Model& model,
                            const std::vector<int64_t>& shape);

// The experiment's training and evaluation splits, opened: a built-in format's files listed and
// their headers read, or a data-source plugin's instances created; the first sample of each
// prepared (its shape is what the model is checked on). Labels are checked once the model's
// classes are known (DataSplit::check_labels). Throws shrink::Error in one line.
// `ranks_here`: the ranks of a distributed run on this machine (they share its cores).
std::pair<DataSplit, DataSplit> open_data(const Experiment& experiment, PluginRegistry& registry,
                                          int ranks_here = 1);

// The sites a quantization stage's config_list creates on `model`: its hand-written entries'
// (plan_sites), then each preset entry's placed around them (place_int8_sites, add_preset_sites).
// The presets' notes (ops they left float) are appended to `notes`. Throws shrink::Error for a
// preset that finds no op the int8 backend runs.
std::vector<PlannedSite> plan_quantization_sites(const ConfigList& config, const Model& model,
                                                 std::vector<std::string>& notes);

// "compress[i]": how messages, passes and the report name stage `i`.
std::string stage_name(std::size_t i);

// A pruner that ranks by what it observes in training (taylor): its masks come at the end of
// each stretch of training, not the start.
bool ranks_in_training(const AlgorithmInfo& algorithm);

// Whether the run writes model_pruned.pt (with export.model): a pruning stage comes before any
// quantization stage (the pruned float model is the one the first quantizer wraps).
bool writes_pruned_model(const std::vector<CheckedStage>& stages);

void print_plan(const Experiment& experiment, const Model& model,
                const std::vector<CheckedStage>& stages, std::ostream& os);

}  // namespace shrink
