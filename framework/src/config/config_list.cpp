#include <shrink/config/config_list.hpp>
#include <shrink/core/error.hpp>
#include <shrink/core/logging.hpp>

#include "config/yaml_messages.hpp"
#include "config/yaml_reader.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <regex>
#include <set>

namespace shrink {
namespace {

using detail::join;

std::vector<std::string> string_list(const YAML::Node& node, const std::string& key,
                                     const std::string& file) {
  SHRINK_CHECK(node.IsSequence(), detail::yaml_mark(file, node)
                                      << ": " << key << ": expected a list of strings, e.g. ["
                                      << key << "_a, " << key << "_b]");
  std::vector<std::string> out;
  for (const auto& item : node) {
    SHRINK_CHECK(item.IsScalar(), detail::yaml_mark(file, item)
                                      << ": " << key << ": expected a string");
    out.push_back(item.as<std::string>());
  }
  return out;
}

std::string canonical_target(const std::string& name, const std::string& where) {
  if (name == "weight" || name == "bias") return name;
  if (name == "_input_" || name == "input") return "_input_0";
  if (name == "_output_" || name == "output") return "_output_0";
  static const std::regex indexed("_(input|output)_([0-9]+)");
  if (std::regex_match(name, indexed)) return name;
  throw Error(where + ": target '" + name +
              "' is not one of _input_, weight, bias, _output_ (or _input_N, _output_N)");
}

// Writes one scalar-or-map setting: a scalar goes to `settings`, a per-type map (NNI 2.x) into
// the target settings of each named type.
void put_setting(ConfigEntry& entry, const std::string& key, const YAML::Node& value,
                 const std::string& file) {
  if (value.IsScalar()) {
    entry.settings.set(key, value.as<std::string>());
    return;
  }
  SHRINK_CHECK(value.IsMap(), detail::yaml_mark(file, value) << ": " << key
                                                             << ": expected a value or a map of "
                                                                "{input|weight|output: value}");
  for (const auto& kv : value) {
    const std::string type = kv.first.as<std::string>();
    SHRINK_CHECK(kv.second.IsScalar(), detail::yaml_mark(file, kv.second)
                                           << ": " << key << "." << type << ": expected a scalar");
    entry.target_settings[canonical_target(type, detail::yaml_mark(file, kv.first))].set(
        key, kv.second.as<std::string>());
  }
}

bool matches_any_regex(const std::string& name, const std::vector<std::string>& patterns) {
  for (const auto& p : patterns) {
    if (std::regex_match(name, std::regex(p))) return true;
  }
  return false;
}

bool contains(const std::vector<std::string>& items, const std::string& x) {
  return std::find(items.begin(), items.end(), x) != items.end();
}

// The entry's op selection, without exclusions of other entries.
bool selects(const ConfigEntry& e, const OpInstance& op) {
  const bool by_name = !e.op_names.empty() || !e.op_names_re.empty();
  if (by_name && !contains(e.op_names, op.name) && !matches_any_regex(op.name, e.op_names_re)) {
    return false;
  }
  if (!e.op_types.empty() && !contains(e.op_types, op.type)) return false;
  if (!by_name && e.op_types.empty()) return false;
  if (contains(e.exclude_op_names, op.name) || matches_any_regex(op.name, e.exclude_op_names_re) ||
      contains(e.exclude_op_types, op.type)) {
    return false;
  }
  return true;
}

std::vector<std::string> default_targets(const OpInstance& op) {
  if (op.has_weight) return {"_input_0", "weight", "_output_0"};
  return {"_output_0"};
}

// A module's _input_0 and _output_0; a functional call's _output_0 (the int8 preset also places
// input sites on functional calls, where the graph shows a tensor: add_preset_sites).
bool op_has_target(const OpInstance& op, const std::string& target) {
  if (target == "weight") return op.has_weight;
  if (target == "bias") return op.has_bias;
  if (op.functional) return target == "_output_0";
  return target == "_input_0" || target == "_output_0";
}

QuantType quant_type_of(const std::string& target) {
  if (target == "weight" || target == "bias") return QuantType::kWeight;
  return target.rfind("_input_", 0) == 0 ? QuantType::kInput : QuantType::kOutput;
}

// The model's op names, after checking that every op an entry names exists (so that a typo is
// an error rather than a silently smaller run).
std::vector<std::string> checked_op_names(const ConfigList& config,
                                          const std::vector<OpInstance>& ops) {
  std::vector<std::string> op_list;
  for (const auto& op : ops) op_list.push_back(op.name);
  for (const auto& e : config.entries) {
    for (const auto& name : e.op_names) {
      SHRINK_CHECK(contains(op_list, name), e.where << ": op_names: the model has no op '" << name
                                                    << "' (ops: " << join(op_list) << ")");
    }
  }
  return op_list;
}

// Ops an `exclude: true` entry selects: out of every entry, wherever it stands.
std::set<std::string> excluded_ops(const ConfigList& config, const std::vector<OpInstance>& ops) {
  std::set<std::string> excluded;
  for (const auto& e : config.entries) {
    if (!e.exclude) continue;
    for (const auto& op : ops) {
      if (selects(e, op)) excluded.insert(op.name);
    }
  }
  return excluded;
}

// quant_dtype / quant_bits / quant_scheme / granularity in their canonical form.
Options canonical_settings(const Options& raw, const std::string& where) {
  Options out;
  std::string dtype = raw.find("quant_dtype") ? *raw.find("quant_dtype") : "";
  std::string bits = raw.find("quant_bits") ? *raw.find("quant_bits") : "";
  // Unset scheme and granularity stay "default": the algorithm's own default (qat: affine per
  // tensor; ptq: symmetric per channel for weights, affine per tensor for activations).
  std::string scheme = raw.find("quant_scheme") ? *raw.find("quant_scheme") : "default";
  std::string granularity = raw.find("granularity") ? *raw.find("granularity") : "default";

  int nbits = 8;
  if (!bits.empty()) {
    try {
      std::size_t used = 0;
      nbits = std::stoi(bits, &used);
      SHRINK_CHECK(used == bits.size(), "");
    } catch (const std::exception&) {
      throw Error(where + ": quant_bits is '" + bits + "', expected an integer from 1 to 32");
    }
    SHRINK_CHECK(nbits >= 1 && nbits <= 32,
                 where << ": quant_bits is " << nbits << ", expected an integer from 1 to 32");
  }
  bool is_signed = true;
  static const std::regex sized("(u?)int([0-9]+)");
  std::smatch m;
  if (dtype.empty() || dtype == "int" || dtype == "uint") {
    is_signed = dtype != "uint";
  } else if (std::regex_match(dtype, m, sized)) {
    is_signed = m[1].str().empty();
    const int dtype_bits = std::stoi(m[2].str());
    SHRINK_CHECK(bits.empty() || dtype_bits == nbits,
                 where << ": quant_dtype " << dtype << " and quant_bits " << nbits << " disagree");
    nbits = dtype_bits;
    SHRINK_CHECK(nbits >= 1 && nbits <= 32, where << ": quant_dtype is '" << dtype
                                                  << "', expected int1..int32 or uint1..uint32");
  } else {
    throw Error(where + ": quant_dtype is '" + dtype +
                "', expected int8, uint8, intN, uintN (or NNI 2.x int, uint)");
  }
  if (scheme == "per_tensor_affine" || scheme == "per_tensor_symmetric" ||
      scheme == "per_channel_affine" || scheme == "per_channel_symmetric") {
    if (scheme.rfind("per_channel", 0) == 0) granularity = "per_channel";
    scheme = scheme.substr(scheme.rfind('_') + 1);
  }
  SHRINK_CHECK(scheme == "affine" || scheme == "symmetric" || scheme == "default",
               where << ": quant_scheme is '" << scheme
                     << "', expected affine, symmetric or default (or NNI 2.x per_tensor_affine, "
                        "per_tensor_symmetric, per_channel_affine, per_channel_symmetric)");
  SHRINK_CHECK(
      granularity == "default" || granularity == "per_channel",
      where << ": granularity is '" << granularity << "', expected default or per_channel");
  out.set("quant_dtype", (is_signed ? "int" : "uint") + std::to_string(nbits));
  out.set("quant_bits", std::to_string(nbits));
  out.set("quant_scheme", scheme);
  out.set("granularity", granularity);
  for (const auto& kv : raw.entries) {
    if (!out.find(kv.first)) out.set(kv.first, kv.second);
  }
  return out;
}

// target_settings: {target: {key: value}}; keys the framework does not know are plugin keys.
void put_target_settings(ConfigEntry& e, const YAML::Node& value, const std::string& file) {
  SHRINK_CHECK(value.IsMap(), detail::yaml_mark(file, value) << ": target_settings: expected a map "
                                                                "{target: {key: value}}");
  for (const auto& t : value) {
    const std::string target =
        canonical_target(t.first.as<std::string>(), detail::yaml_mark(file, t.first));
    SHRINK_CHECK(t.second.IsMap(), detail::yaml_mark(file, t.second)
                                       << ": target_settings." << target << ": expected a map");
    for (const auto& s : t.second) {
      SHRINK_CHECK(s.second.IsScalar(), detail::yaml_mark(file, s.second) << ": expected a scalar");
      const std::string key = s.first.as<std::string>();
      if (!contains(config_list_keys(), key))
        e.plugin_keys.emplace_back(key, detail::yaml_mark(file, s.first));
      e.target_settings[target].set(key, s.second.as<std::string>());
    }
  }
}

// One key of an entry; keys the framework does not know are kept as plugin keys.
void put_key(ConfigEntry& e, const std::string& key, const YAML::Node& value,
             const std::string& where, const std::string& file) {
  if (key == "op_names")
    e.op_names = string_list(value, key, file);
  else if (key == "op_names_re")
    e.op_names_re = string_list(value, key, file);
  else if (key == "exclude_op_names")
    e.exclude_op_names = string_list(value, key, file);
  else if (key == "exclude_op_names_re")
    e.exclude_op_names_re = string_list(value, key, file);
  else if (key == "exclude_op_types")
    e.exclude_op_types = string_list(value, key, file);
  else if (key == "op_types") {
    for (const auto& t : string_list(value, key, file)) {
      if (t == "default") {
        e.op_types.insert(e.op_types.end(), default_op_types().begin(), default_op_types().end());
      } else {
        e.op_types.push_back(t);
      }
    }
  } else if (key == "exclude") {
    SHRINK_CHECK(value.IsScalar() &&
                     (value.as<std::string>() == "true" || value.as<std::string>() == "false"),
                 where << ": exclude: expected true or false");
    e.exclude = value.as<std::string>() == "true";
  } else if (key == "target_names" || key == "quant_types") {
    for (const auto& t : string_list(value, key, file)) {
      e.targets.push_back(canonical_target(t, detail::yaml_mark(file, value)));
    }
  } else if (key == "target_settings") {
    put_target_settings(e, value, file);
  } else if (key == "preset") {
    SHRINK_CHECK(value.IsScalar() && contains(quantization_presets(), value.as<std::string>()),
                 where << ": preset: expected one of " << join(quantization_presets()));
    e.preset = value.as<std::string>();
  } else {
    if (!contains(config_list_keys(), key)) e.plugin_keys.emplace_back(key, where);
    put_setting(e, key, value, file);
  }
}

// A preset places its own sites: selecting ops or targets beside it would be ignored.
void check_preset_entry(const ConfigEntry& e) {
  const char* key = !e.op_names.empty()      ? "op_names"
                    : !e.op_names_re.empty() ? "op_names_re"
                    : !e.op_types.empty()    ? "op_types"
                    : !e.targets.empty()     ? "target_names"
                    : e.exclude              ? "exclude"
                                             : nullptr;
  SHRINK_CHECK(key == nullptr,
               e.where << ": config_list[" << e.index << "]: " << key
                       << " beside preset: " << e.preset
                       << " places its own sites; leave ops out with exclude_op_names (or _re, "
                          "exclude_op_types), or configure them in an entry of their own, which "
                          "wins");
}

// Writes `settings[target]`'s keys (when it has them) over `raw`.
void put_all(Options& raw, const std::map<std::string, Options>& settings,
             const std::string& target) {
  auto ts = settings.find(target);
  if (ts == settings.end()) return;
  for (const auto& kv : ts->second.entries) raw.set(kv.first, kv.second);
}

PlannedSite make_site(const ConfigEntry& e, const OpInstance& op, const std::string& target,
                      const Options& raw) {
  PlannedSite site;
  site.op_name = op.name;
  site.op_type = op.type;
  site.target = target;
  site.quant_type = quant_type_of(target);
  site.config = canonical_settings(raw, e.where);
  site.entry_index = e.index;
  return site;
}

}  // namespace

const std::vector<std::string>& quantization_presets() {
  static const std::vector<std::string> presets = {"int8_onednn"};
  return presets;
}

const std::vector<std::string>& config_list_keys() {
  static const std::vector<std::string> selection_and_quantization = {
      "op_names",         "op_names_re", "op_types",     "exclude_op_names", "exclude_op_names_re",
      "exclude_op_types", "exclude",     "target_names", "target_settings",  "quant_types",
      "quant_bits",       "quant_dtype", "quant_scheme", "granularity",      "preset"};
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> all = selection_and_quantization;
    all.insert(all.end(), pruning_keys().begin(), pruning_keys().end());
    return all;
  }();
  return keys;
}

const std::vector<std::string>& pruning_keys() {
  static const std::vector<std::string> keys = {"sparse_ratio", "sparsity", "sparsity_per_layer",
                                                "total_sparsity", "max_sparsity_per_layer"};
  return keys;
}

const std::vector<std::string>& default_op_types() {
  static const std::vector<std::string> types = {
      "Conv1d", "Conv2d",   "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
      "Linear", "Bilinear", "PReLU",  "Embedding",       "EmbeddingBag"};
  return types;
}

std::vector<ConfigList> ConfigList::load_file(const std::string& path) {
  const YAML::Node root = detail::load_yaml_file(path);
  if (root.IsSequence()) return {parse(root, path)};
  SHRINK_CHECK(root.IsMap(), path << ": expected a config_list, a mapping with config_list, or an "
                                     "experiment with compress stages");
  if (root["config_list"]) return {parse(root["config_list"], path)};
  std::vector<ConfigList> lists;
  if (root["compress"] && root["compress"].IsSequence()) {
    for (const auto& stage : root["compress"]) {
      if (stage.IsMap() && stage["config_list"]) lists.push_back(parse(stage["config_list"], path));
    }
  }
  SHRINK_CHECK(!lists.empty(), path
                                   << ": no config_list found (expected a list, a config_list key, "
                                      "or compress stages with config_list)");
  return lists;
}

ConfigList ConfigList::parse_text(const std::string& yaml, const std::string& file) {
  return parse(detail::load_yaml_text(yaml, file), file);
}

ConfigList ConfigList::parse(const YAML::Node& node, const std::string& file) {
  SHRINK_CHECK(node.IsSequence() && node.size() > 0,
               detail::yaml_mark(file, node)
                   << ": config_list: expected a non-empty list of mappings "
                      "(each with op_names or op_types)");
  ConfigList list;
  int index = 0;
  for (const auto& item : node) {
    ConfigEntry e;
    e.index = index++;
    e.where = detail::yaml_mark(file, item);
    SHRINK_CHECK(item.IsMap(), e.where << ": config_list[" << e.index << "]: expected a mapping");
    for (const auto& kv : item) {
      put_key(e, kv.first.as<std::string>(), kv.second, detail::yaml_mark(file, kv.first), file);
    }
    for (const auto& re : e.op_names_re) {
      try {
        std::regex probe(re);
      } catch (const std::regex_error&) {
        throw Error(e.where + ": op_names_re: '" + re + "' is not a valid regular expression");
      }
    }
    if (!e.preset.empty()) {
      check_preset_entry(e);
    } else {
      SHRINK_CHECK(
          e.exclude || !e.op_names.empty() || !e.op_names_re.empty() || !e.op_types.empty(),
          e.where << ": config_list[" << e.index
                  << "]: give op_names, op_names_re or op_types to say which ops it selects");
    }
    list.entries.push_back(std::move(e));
  }
  return list;
}

std::vector<PlannedSite> plan_sites(const ConfigList& config, const std::vector<OpInstance>& ops) {
  const std::vector<std::string> op_list = checked_op_names(config, ops);
  const std::set<std::string> excluded = excluded_ops(config, ops);
  std::vector<PlannedSite> sites;
  std::set<std::pair<std::string, std::string>> configured;
  for (const auto& e : config.entries) {
    if (e.exclude || !e.preset.empty()) continue;
    int created = 0;
    bool selected_any = false;
    for (const auto& op : ops) {
      if (!selects(e, op) || excluded.count(op.name)) continue;
      selected_any = true;
      const std::vector<std::string> targets = e.targets.empty() ? default_targets(op) : e.targets;
      for (const auto& target : targets) {
        if (!op_has_target(op, target)) {
          // Asked for by name: an error. Selected by type among others: skipped.
          SHRINK_CHECK(!contains(e.op_names, op.name), e.where << ": op '" << op.name << "' ("
                                                               << op.type << ") has no target '"
                                                               << target << "'");
          continue;
        }
        if (!configured.insert({op.name, target}).second) {
          logging::debug(e.where + ": " + op.name + "." + target +
                         " is already configured by an earlier entry; the first entry wins");
          continue;
        }
        Options raw = e.settings;
        put_all(raw, e.target_settings, target);
        sites.push_back(make_site(e, op, target, raw));
        ++created;
      }
    }
    SHRINK_CHECK(selected_any, e.where << ": config_list[" << e.index
                                       << "] selects no op of the model (ops: " << join(op_list)
                                       << ")");
    if (created == 0) {
      logging::warn(e.where + ": config_list[" + std::to_string(e.index) +
                    "] creates no site: every op it selects is configured by an earlier entry or "
                    "lacks its targets");
    }
  }
  return sites;
}

bool preset_excludes(const ConfigList& config, const ConfigEntry& preset, const OpInstance& op) {
  if (contains(preset.exclude_op_names, op.name) ||
      matches_any_regex(op.name, preset.exclude_op_names_re) ||
      contains(preset.exclude_op_types, op.type)) {
    return true;
  }
  for (const auto& e : config.entries) {
    if (e.exclude && selects(e, op)) return true;
  }
  return false;
}

void add_preset_sites(const ConfigEntry& preset, const std::vector<PlacedSite>& placed,
                      const std::vector<OpInstance>& ops, std::vector<PlannedSite>& sites) {
  std::set<std::string> configured;
  for (const auto& s : sites) configured.insert(s.key());
  const std::size_t first = sites.size();
  for (const PlacedSite& p : placed) {
    if (!configured.insert(p.key()).second) continue;  // hand-written, or twice
    const auto op = std::find_if(ops.begin(), ops.end(),
                                 [&](const OpInstance& o) { return o.name == p.op_name; });
    SHRINK_CHECK(op != ops.end(), preset.where << ": preset " << preset.preset
                                               << ": the model has no op '" << p.op_name << "'");
    // oneDNN's int8 kernels: symmetric per-channel int8 weights, per-tensor activations.
    const QuantType type = quant_type_of(p.target);
    Options raw = preset.settings;
    put_all(raw, preset.target_settings,
            type == QuantType::kWeight  ? "weight"
            : type == QuantType::kInput ? "_input_0"
                                        : "_output_0");
    if (!raw.find("quant_dtype")) raw.set("quant_dtype", raw.find("quant_bits") ? "int" : "int8");
    if (!raw.find("quant_scheme")) {
      raw.set("quant_scheme", type == QuantType::kWeight ? "symmetric" : "affine");
    }
    if (!raw.find("granularity")) {
      raw.set("granularity", type == QuantType::kWeight ? "per_channel" : "default");
    }
    PlannedSite site = make_site(preset, *op, p.target, raw);
    site.why = p.why;
    site.range_of = p.range_of;
    sites.push_back(std::move(site));
  }
  // A range is shared with a site of the preset with the same settings, or not at all.
  std::map<std::string, const PlannedSite*> own;
  for (std::size_t k = first; k < sites.size(); ++k) {
    own[sites[k].key()] = &sites[k];
  }
  for (std::size_t k = first; k < sites.size(); ++k) {
    auto owner = own.find(sites[k].range_of);
    if (owner == own.end() || !owner->second->range_of.empty() ||
        owner->second->config.entries != sites[k].config.entries) {
      sites[k].range_of.clear();
    }
  }
}

namespace {

// A ratio in [0, 1) (or [0, 1] for a cap), named in the message.
double ratio(const Options& settings, const std::string& key, const std::string& where, bool cap) {
  const std::string text = *settings.find(key);
  double v = 0;
  try {
    std::size_t used = 0;
    v = std::stod(text, &used);
    SHRINK_CHECK(used == text.size(), "");
  } catch (const std::exception&) {
    throw Error(where + ": " + key + " is '" + text + "', expected a number in [0, 1)");
  }
  SHRINK_CHECK(v >= 0 && (cap ? v <= 1 : v < 1), where << ": " << key << " is " << text
                                                       << ", expected a value in [0, "
                                                       << (cap ? "1]" : "1)"));
  return v;
}

}  // namespace

std::vector<PruneTarget> plan_pruning(const ConfigList& config,
                                      const std::vector<OpInstance>& ops) {
  const std::vector<std::string> op_list = checked_op_names(config, ops);
  const std::set<std::string> excluded = excluded_ops(config, ops);
  std::vector<PruneTarget> out;
  std::set<std::string> configured;
  for (const auto& e : config.entries) {
    if (e.exclude) continue;
    const std::string where = e.where + ": config_list[" + std::to_string(e.index) + "]";
    for (const auto& kv : e.settings.entries) {
      const bool plugin_key = std::any_of(e.plugin_keys.begin(), e.plugin_keys.end(),
                                          [&](const auto& p) { return p.first == kv.first; });
      if (plugin_key) continue;  // the algorithm's own: check_plugin_keys
      SHRINK_CHECK(contains(pruning_keys(), kv.first),
                   where << ": " << kv.first << " is not a pruning key (pruning takes: "
                         << join(pruning_keys()) << ")");
    }
    SHRINK_CHECK(e.targets.empty() && e.target_settings.empty(),
                 where << ": target_names / target_settings: pruning masks each op's weight (and "
                          "its bias with it); leave them out");
    const Options& st = e.settings;
    int given = 0;
    for (const char* k : {"sparse_ratio", "sparsity", "sparsity_per_layer", "total_sparsity"}) {
      given += st.find(k) ? 1 : 0;
    }
    SHRINK_CHECK(given == 1,
                 where << ": give exactly one of sparse_ratio (or its NNI aliases sparsity, "
                          "sparsity_per_layer) and total_sparsity (a global ranking)");
    PruneTarget base;
    base.global = st.find("total_sparsity") != nullptr;
    for (const char* k : {"sparse_ratio", "sparsity", "sparsity_per_layer", "total_sparsity"}) {
      if (st.find(k)) base.sparsity = ratio(st, k, where, false);
    }
    if (st.find("max_sparsity_per_layer")) {
      base.max_sparsity = ratio(st, "max_sparsity_per_layer", where, true);
    }
    base.entry_index = e.index;
    base.where = e.where;
    bool selected_any = false;
    for (const auto& op : ops) {
      if (!selects(e, op) || excluded.count(op.name)) continue;
      selected_any = true;
      if (!op.has_weight) {
        SHRINK_CHECK(!contains(e.op_names, op.name), where << ": op '" << op.name << "' ("
                                                           << op.type
                                                           << ") has no weight to prune");
        continue;
      }
      if (!configured.insert(op.name).second) continue;  // the first entry wins
      PruneTarget t = base;
      t.op_name = op.name;
      t.op_type = op.type;
      t.has_bias = op.has_bias;
      out.push_back(std::move(t));
    }
    SHRINK_CHECK(selected_any,
                 where << " selects no op of the model (ops: " << join(op_list) << ")");
  }
  return out;
}

}  // namespace shrink
