// NNI's config_list: which op instances and targets to compress, and with which settings.
//
// Both spellings are accepted:
//  - NNI 3.0: op_names, op_names_re, op_types, exclude_op_names, exclude_op_names_re,
//    exclude_op_types, target_names (_input_, weight, bias, _output_), target_settings, and the
//    shortcut keys quant_dtype (int8, uint8, intN, uintN), quant_scheme (affine, symmetric),
//    granularity (default, per_channel);
//  - NNI 2.x: quant_types (input, weight, output), quant_bits (an int or a per-type map),
//    quant_scheme (per_tensor_affine, per_tensor_symmetric, per_channel_affine,
//    per_channel_symmetric; or a per-type map), quant_dtype (int, uint), exclude, op_types
//    `default`.
//
// Any other key is an algorithm's own (qat's quant_start_step, ptq's range_estimator): parse()
// keeps it as a setting and records where it was written (ConfigEntry::plugin_keys), and the stage
// that knows its algorithm checks it against the keys the algorithm declares
// (check_plugin_keys in <shrink/run/plugin_keys.hpp>).
//
// Precedence (as NNI 3.0): an (op, target) pair is configured by the *first* entry that selects
// it; later entries do not re-configure it. An entry with `exclude: true` removes the ops it
// selects from every entry, wherever it stands.
//
// Shrink's own key `preset` (`- preset: int8_onednn`) asks for the sites a backend's int8 kernels
// consume, placed by walking the model's graph (<shrink/export/int8_placement.hpp>). Such an entry
// selects no ops itself; it takes exclude_op_names, exclude_op_names_re, exclude_op_types, the
// quantization settings (over the preset's defaults) and plugin keys. Hand-written entries win
// wherever they configure the same (op, target), whatever their position.
#pragma once

#include <shrink/core/op_instance.hpp>
#include <shrink/core/options.hpp>
#include <shrink/quant_type.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace YAML {
class Node;
}

namespace shrink {

struct ConfigEntry {
  int index = 0;
  std::string where;  // "file:line:column" of the entry, for messages
  std::vector<std::string> op_names;
  std::vector<std::string> op_names_re;
  std::vector<std::string> op_types;  // "default" already expanded
  std::vector<std::string> exclude_op_names;
  std::vector<std::string> exclude_op_names_re;
  std::vector<std::string> exclude_op_types;
  bool exclude = false;
  std::string preset;                // "int8_onednn": sites placed for a backend; "" otherwise
  std::vector<std::string> targets;  // canonical ("_input_0", "weight", "bias", "_output_0")
  Options settings;                  // shortcut keys, as written
  std::map<std::string, Options> target_settings;  // per canonical target
  // Keys the framework does not know (at the top level or in target_settings), for the stage's
  // algorithm to accept or not, in the order written: {key, "file:line:column"}.
  std::vector<std::pair<std::string, std::string>> plugin_keys;
};

struct ConfigList {
  std::vector<ConfigEntry> entries;

  // Parses a YAML sequence of mappings. `file` names the source in messages. Throws shrink::Error
  // with "file:line:column: key: what was expected".
  static ConfigList parse(const YAML::Node& node, const std::string& file);
  static ConfigList parse_text(const std::string& yaml, const std::string& file);
  // Reads a YAML file that is a config_list, a mapping with a `config_list` key, or an experiment
  // whose `compress` stages carry config_lists (one ConfigList per stage, in order).
  static std::vector<ConfigList> load_file(const std::string& path);
};

// One site the config_list creates.
struct PlannedSite {
  std::string op_name;
  std::string op_type;
  std::string target;  // "_input_0", "weight", "bias", "_output_0"
  QuantType quant_type = QuantType::kWeight;
  Options config;  // canonical keys: quant_dtype, quant_bits, quant_scheme, granularity, + others
  int entry_index = 0;
  std::string why;  // a preset's site: why it is there ("the input of int8 conv2d conv1")
  // "op.target" of the site whose range this one uses (a preset's: a cat's inputs and output share
  // one, so that the int8 cat copies rather than requantizes); "" for a range of its own.
  std::string range_of;
  // "op.target" ("layer1.0.conv1._input_0"; for a weight or bias also its attribute path): what
  // names the site in messages, calibration keys and range_of.
  std::string key() const { return op_name + "." + target; }
};

// Resolves the config_list's hand-written entries against a model's ops, in op order (preset
// entries are left to add_preset_sites). Throws shrink::Error for an entry that selects nothing,
// an op name the model lacks, or a setting that is out of range.
std::vector<PlannedSite> plan_sites(const ConfigList& config, const std::vector<OpInstance>& ops);

// The presets a `preset` key takes.
const std::vector<std::string>& quantization_presets();

// Whether preset entry `preset` leaves `op` out: its own exclude_op_* keys, or an `exclude: true`
// entry of `config`.
bool preset_excludes(const ConfigList& config, const ConfigEntry& preset, const OpInstance& op);

// A site a preset chose (before its settings), and why.
struct PlacedSite {
  std::string op_name;
  std::string target;  // canonical: "_input_0", "weight", "_output_0"
  std::string why;
  std::string range_of;  // "op.target" of the placed site whose range it shares; "" for its own
  std::string key() const { return op_name + "." + target; }  // as PlannedSite::key
};

// Appends to `sites` (plan_sites' result) the preset entry's `placed` sites with its settings:
// the preset's defaults (weights int8 symmetric per channel, activations int8 affine per tensor)
// under the entry's own keys (target_settings' weight, _input_ and _output_ apply to each kind).
// An (op, target) that `sites` already has is left to it: the hand-written entry wins; a site
// shares a range (range_of) only with one of the preset's own with the same settings. Throws
// shrink::Error for an op the model lacks or a setting out of range.
void add_preset_sites(const ConfigEntry& preset, const std::vector<PlacedSite>& placed,
                      const std::vector<OpInstance>& ops, std::vector<PlannedSite>& sites);

// One op a pruning config_list selects. Keys: sparse_ratio (NNI 3.0; NNI 2.x sparsity,
// sparsity_per_layer) in [0, 1), each op pruned to it; or total_sparsity, the entry's ops ranked
// together (a global ranking); max_sparsity_per_layer caps any op (global ranking).
struct PruneTarget {
  std::string op_name;
  std::string op_type;
  bool has_bias = false;
  double sparsity = 0;
  bool global = false;        // total_sparsity: ranked across the entry's ops
  double max_sparsity = 1.0;  // max_sparsity_per_layer
  int entry_index = 0;
  std::string where;
};

// Resolves a pruning config_list against a model's ops, in op order. Throws shrink::Error for a
// quantization key, a ratio outside [0, 1), an op without a weight asked for by name, an entry
// that selects nothing. Plugin keys (ConfigEntry::plugin_keys) are left to check_plugin_keys.
std::vector<PruneTarget> plan_pruning(const ConfigList& config, const std::vector<OpInstance>& ops);

// The keys a config_list entry may give whatever its algorithm (selection, targets, NNI's
// quantization and pruning settings), in the order messages list them.
const std::vector<std::string>& config_list_keys();

// The pruning settings among them (sparse_ratio and its NNI aliases, total_sparsity,
// max_sparsity_per_layer): what a quantization stage must not be given.
const std::vector<std::string>& pruning_keys();

// NNI's `default` op type: the weighted module types.
const std::vector<std::string>& default_op_types();

}  // namespace shrink
