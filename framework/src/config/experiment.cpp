#include <shrink/config/experiment.hpp>
#include <shrink/core/error.hpp>

#include "config/data_reader.hpp"
#include "config/map_reader.hpp"
#include "config/yaml_messages.hpp"
#include "config/yaml_reader.hpp"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace shrink {
namespace {

// Whether `path` exists; a name too long or a folder that cannot be searched is "no".
bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

using detail::join;
using detail::override_of;
using detail::override_origins;
using detail::record_override;

using detail::MapReader;

// Nested mapping -> flattened Options ("a.b" = "1"); sequences as flow YAML.
void flatten(const YAML::Node& node, const std::string& prefix, Options& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      const std::string key = kv.first.as<std::string>();
      flatten(kv.second, prefix.empty() ? key : prefix + "." + key, out);
    }
  } else if (node.IsScalar()) {
    out.set(prefix, node.as<std::string>());
  } else {
    YAML::Emitter e;
    e << YAML::Flow << node;
    out.set(prefix, e.c_str());
  }
}

std::string resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

// The index `part` gives into `list` (a sequence reached by `walked`, the path so far).
std::size_t list_index(const YAML::Node& list, const std::string& part, const std::string& walked,
                       const std::string& assignment) {
  std::size_t used = 0;
  std::size_t index = 0;
  try {
    index = std::stoul(part, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  SHRINK_CHECK(used == part.size() && !part.empty(),
               "--set '" << assignment << "': " << walked << " is a list, so the next part of the "
                         << "path is an index, e.g. " << walked << ".0" << (part.empty() ? "" : ".")
                         << part << "; got '" << part << "'");
  SHRINK_CHECK(index < list.size(), "--set '" << assignment << "': " << walked << "." << part
                                              << ": index " << index
                                              << " is out of range (the list has " << list.size()
                                              << " item" << (list.size() == 1 ? "" : "s") << ")");
  return index;
}

// `--set a.b.0.c=value`: walks (and creates) mapping keys; numeric parts index sequences. The
// nodes it writes are recorded as the override's, for messages.
void apply_override(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  SHRINK_CHECK(eq != std::string::npos && eq > 0,
               "--set '" << assignment << "': expected key.path=value");
  const std::string path = assignment.substr(0, eq);
  // Errors in the value say "--set 'key=value':line:column: ...".
  YAML::Node value =
      detail::load_yaml_text(assignment.substr(eq + 1), "--set '" + assignment + "'");
  std::vector<std::string> parts;
  std::stringstream in(path);
  std::string part;
  while (std::getline(in, part, '.')) parts.push_back(part);
  SHRINK_CHECK(!parts.empty() && path.back() != '.',
               "--set '" << assignment << "': expected key.path=value");
  std::vector<YAML::Node> chain = {root};
  std::string walked;
  std::size_t created = parts.size();  // the first part the file did not have
  for (std::size_t i = 0; i < parts.size(); ++i) {
    YAML::Node current = chain.back();
    const std::string& p = parts[i];
    const bool last = i + 1 == parts.size();
    if (current.IsSequence()) {
      const std::size_t index = list_index(current, p, walked, assignment);
      if (last) current[index] = value;
      chain.push_back(current[index]);
    } else {
      SHRINK_CHECK(!current || current.IsMap() || current.IsNull(),
                   "--set '" << assignment << "': " << walked
                             << " is a value, not a mapping, so it has no '" << p << "'");
      if (created == parts.size() && !current[p]) created = i;
      if (last) current[p] = value;
      chain.push_back(current[p]);
    }
    walked += (walked.empty() ? "" : ".") + p;
  }
  // What the override wrote (the mappings it created, with their keys, or the value it replaced)
  // has no position in the file: messages about it name the override.
  const std::size_t top = created < parts.size() ? created : parts.size() - 1;
  record_override(chain[top + 1], assignment);
  if (created < parts.size()) {
    for (const auto& kv : chain[top]) {
      if (kv.first.as<std::string>() == parts[top])
        override_origins().emplace_back(kv.first, assignment);
    }
  }
}

// A path the experiment names: relative to the YAML file's folder when written in the file, to the
// current folder when given with --set (as --out is).
std::string resolve_path(const std::string& base_dir, const YAML::Node& node,
                         const std::string& text) {
  return resolve(override_of(node) ? fs::current_path().string() : base_dir, text);
}

TrainSpec read_train(const YAML::Node& node, const std::string& file, const std::string& name) {
  TrainSpec spec;
  if (!node || node.IsNull()) return spec;  // absent, or `pretrain: null` / `--set pretrain=null`
  MapReader r(node, file, name, {"epochs", "steps", "optimizer", "scheduler"});
  spec.epochs = r.integer("epochs", 0, 0);
  spec.steps = r.integer("steps", 0, 0);
  spec.enabled = spec.epochs > 0 || spec.steps > 0;
  if (r.has("optimizer")) {
    MapReader o(r.node("optimizer"), file, name + ".optimizer",
                {"name", "lr", "momentum", "weight_decay"});
    spec.optimizer.name = o.choice("name", "sgd", {"sgd", "adam", "adamw"});
    spec.optimizer.lr = o.number("lr", 0.01, 0.0);
    spec.optimizer.momentum = o.number("momentum", 0.0, 0.0);
    spec.optimizer.weight_decay = o.number("weight_decay", 0.0, 0.0);
  }
  if (r.has("scheduler")) {
    MapReader s(r.node("scheduler"), file, name + ".scheduler",
                {"name", "step_size", "gamma", "eta_min"});
    spec.scheduler.name = s.choice("name", "none", {"none", "step", "cosine"});
    spec.scheduler.step_size = s.integer("step_size", 1, 1);
    spec.scheduler.gamma = s.number("gamma", 0.1, 0.0);
    spec.scheduler.eta_min = s.number("eta_min", 0.0, 0.0);
  }
  return spec;
}

}  // namespace

double SchedulerSpec::lr_at(double base_lr, int64_t epoch, int64_t epochs) const {
  if (name == "step") return base_lr * std::pow(gamma, static_cast<double>(epoch / step_size));
  if (name == "cosine" && epochs > 0) {
    const double t = static_cast<double>(epoch) / static_cast<double>(epochs);
    return eta_min + (base_lr - eta_min) * (1.0 + std::cos(M_PI * t)) / 2.0;
  }
  return base_lr;
}

namespace {

// A file or folder the data options name, resolved and checked to exist.
std::string existing_path(const MapReader& d, const std::string& base, const std::string& key) {
  const std::string p = resolve_path(base, d.node(key), d.str(key, ""));
  SHRINK_CHECK(exists(p), d.where(key)
                              << ": " << d.qualified(key) << ": no such file or folder " << p);
  return p;
}

// Where each split comes from. The evaluation split is said explicitly: evaluating on the
// training data unasked would report a training accuracy as a test one. IDX folders hold both.
void read_sources(const MapReader& d, const std::string& base, DataOptions& data) {
  const bool folder = data.format == "folder";
  const bool plugin = !is_builtin_format(data.format);
  for (const char* key : {"list", "test_list", "scaled_decode"}) {
    SHRINK_CHECK(folder || !d.has(key), d.where(key) << ": data." << key
                                                     << ": only for format folder (this is "
                                                     << data.format << ")");
  }
  SHRINK_CHECK(!d.has("test_path") || !d.has("test_list"),
               d.where("test_list") << ": data.test_path and data.test_list: give one");
  if (folder && d.has("list")) {
    SHRINK_CHECK(!d.has("path"), d.where("path") << ": data.path and data.list: give one (the "
                                                    "class folders, or a list file)");
    data.list = existing_path(d, base, "list");
  } else if (!plugin || d.has("path")) {
    SHRINK_CHECK(d.has("path"), d.where("path") << ": data.path: required");
    data.path = existing_path(d, base, "path");
  }
  if (data.format == "idx") {
    SHRINK_CHECK(!d.has("test_path"), d.where("test_path")
                                          << ": data.test_path: not for format idx (an IDX "
                                             "folder holds its t10k test split)");
    return;
  }
  if (folder && d.has("test_list")) {
    data.test_list = existing_path(d, base, "test_list");
    return;
  }
  if (plugin && !d.has("test_path")) return;
  SHRINK_CHECK(d.has("test_path"), d.where("path")
                                       << ": data.test_path: required with format " << data.format
                                       << " (the evaluation "
                                       << (folder ? "folder, data.test_list" : "file")
                                       << ", or 'train' to evaluate on the training data)");
  if (d.str("test_path", "") == "train") {
    data.test_path = data.path;
    data.test_list = data.list;
    return;
  }
  data.test_path = existing_path(d, base, "test_path");
}

// A data-source plugin's own keys: every key of `data:` that is not the framework's, flattened
// (the plugin declares which it reads; the plan checks them against that).
void read_plugin_keys(const YAML::Node& node, const std::string& path,
                      const std::vector<std::string>& framework_keys, DataOptions& data) {
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (std::find(framework_keys.begin(), framework_keys.end(), key) != framework_keys.end()) {
      continue;
    }
    Options flat;
    flatten(kv.second, key, flat);
    for (const auto& [k, v] : flat.entries) {
      data.plugin_keys.emplace_back(k, v);
      data.plugin_key_places.push_back(detail::yaml_mark(path, kv.first));
    }
  }
}

// `data:`: where the samples come from and how they are prepared.
void read_data(const MapReader& r, const std::string& path, const std::string& base,
               Experiment& x) {
  SHRINK_CHECK(r.has("data"), path << ": data: required");
  const YAML::Node node = r.node("data");
  const std::vector<std::string> keys = {
      "format",          "path",          "test_path", "list",     "test_list",    "batch_size",
      "test_batch_size", "normalize",     "resize",    "channels", "train_limit",  "test_limit",
      "transforms",      "on_bad_sample", "workers",   "prefetch", "scaled_decode"};
  std::vector<std::string> allowed = keys;
  const bool plugin = node.IsMap() && node["format"] && node["format"].IsScalar() &&
                      !is_builtin_format(node["format"].as<std::string>());
  if (plugin) {
    for (const auto& kv : node) allowed.push_back(kv.first.as<std::string>());
  }
  MapReader d(node, path, "data", allowed);
  x.data.where = detail::yaml_mark(path, node);
  x.data.format = d.str("format", "idx");
  read_sources(d, base, x.data);
  if (plugin) read_plugin_keys(node, path, keys, x.data);
  x.batch_size = d.integer("batch_size", 64, 1);
  x.test_batch_size = d.integer("test_batch_size", 1000, 1);
  x.data.train_limit = d.integer("train_limit", 0, 0);
  x.data.test_limit = d.integer("test_limit", 0, 0);
  x.data.workers = d.integer("workers", -1, 0, 256);    // absent: automatic (-1)
  x.data.prefetch = d.integer("prefetch", 0, 1, 1024);  // absent: two per worker (0)
  x.data.on_bad_sample = d.choice("on_bad_sample", "error", {"error", "skip"});
  x.data.scaled_decode = d.boolean("scaled_decode", true);
  if (!d.has("transforms")) return detail::read_legacy_transforms(d, path, x.data);
  for (const char* old : {"resize", "channels", "normalize"}) {
    SHRINK_CHECK(!d.has(old), d.where(old) << ": data." << old
                                           << ": not with data.transforms (write it as a "
                                              "transform there)");
  }
  detail::read_transforms(d.node("transforms"), path, x.data);
}

// `- remove_channels: true`: a stage of its own, without a plugin.
StageSpec read_remove_channels(const YAML::Node& stage, const std::string& path,
                               const std::string& name) {
  MapReader rc(stage, path, name, {"remove_channels"});
  StageSpec spec;
  spec.where = detail::yaml_mark(path, stage);
  spec.remove_channels = rc.boolean("remove_channels", false);
  SHRINK_CHECK(spec.remove_channels, rc.where("remove_channels")
                                         << ": " << name
                                         << ".remove_channels: only true makes a stage "
                                            "(leave the stage out instead)");
  return spec;
}

// One `compress:` stage with a plugin: its options, calibration, schedule, training and
// config_list.
StageSpec read_stage(const YAML::Node& stage, const std::string& path, const std::string& name) {
  if (stage.IsMap() && stage["remove_channels"]) return read_remove_channels(stage, path, name);
  MapReader s(stage, path, name,
              {"plugin", "options", "calibration", "config_list", "fold_bn", "schedule", "train"});
  StageSpec spec;
  spec.where = detail::yaml_mark(path, stage);
  SHRINK_CHECK(s.has("plugin"), spec.where
                                    << ": " << name
                                    << ".plugin: required (or remove_channels: true, a stage "
                                       "that removes the pruned channels)");
  spec.plugin = s.str("plugin", "");
  if (s.has("options")) {
    SHRINK_CHECK(s.node("options").IsMap() || s.node("options").IsNull(),
                 s.where("options") << ": " << name << ".options: expected a mapping");
    flatten(s.node("options"), "", spec.options);
    YAML::Emitter e;
    e << s.node("options");
    spec.options.text = e.c_str();
  }
  if (s.has("calibration") && !s.node("calibration").IsNull()) {
    MapReader c(s.node("calibration"), path, name + ".calibration", {"batches", "batch_size"});
    spec.calibration.where = s.where("calibration");
    spec.calibration.batches = c.integer("batches", 0, 1);
    SHRINK_CHECK(c.has("batches"), spec.calibration.where
                                       << ": " << name
                                       << ".calibration.batches: required (how many batches "
                                          "to calibrate on, at least 1)");
    spec.calibration.batch_size = c.integer("batch_size", 0, 1);
  }
  spec.fold_bn = s.boolean("fold_bn", false);
  if (s.has("schedule") && !s.node("schedule").IsNull()) {
    MapReader k(s.node("schedule"), path, name + ".schedule", {"kind", "updates"});
    spec.schedule.where = s.where("schedule");
    spec.schedule.kind = k.choice("kind", "one_shot", {"one_shot", "linear", "agp"});
    spec.schedule.updates = k.integer("updates", spec.schedule.kind == "one_shot" ? 1 : 4, 1);
    SHRINK_CHECK(spec.schedule.kind != "one_shot" || spec.schedule.updates == 1,
                 k.where("updates") << ": " << name
                                    << ".schedule.updates: a one_shot schedule "
                                       "updates the masks once");
  }
  spec.train = read_train(s.node("train"), path, name + ".train");
  SHRINK_CHECK(s.has("config_list"), spec.where << ": " << name << ".config_list: required");
  spec.config_list = ConfigList::parse(s.node("config_list"), path);
  return spec;
}

// `export:`: where the results go and which models are written.
void read_export(const MapReader& r, const std::string& path, const std::string& base,
                 Experiment& x) {
  x.export_dir = resolve(fs::current_path().string(), "shrink-out");
  if (r.has("export")) {
    MapReader e(r.node("export"), path, "export",
                {"dir", "model", "int8", "int8_only_if_faster", "latency"});
    if (e.has("dir")) x.export_dir = resolve_path(base, e.node("dir"), e.str("dir", ""));
    x.export_model = e.boolean("model", true);
    x.export_int8 = e.boolean("int8", false);
    x.export_int8_only_if_faster = e.boolean("int8_only_if_faster", true);
    x.export_latency = e.boolean("latency", true);
    SHRINK_CHECK(!x.export_int8 || x.export_model,
                 e.where("int8") << ": export.int8: needs export.model (the int8 model is lowered "
                                    "from model_qat.pt)");
  }
}

DistributedSpec read_distributed(const YAML::Node& node, const std::string& path) {
  MapReader d(node, path, "distributed", {"backend", "timeout", "sync_bn"});
  DistributedSpec spec;
  spec.backend = d.choice("backend", spec.backend, {"gloo", "nccl"});
  spec.timeout_seconds = d.integer("timeout", spec.timeout_seconds, 1, 24 * 3600);
  spec.sync_bn = d.boolean("sync_bn", spec.sync_bn);
  return spec;
}

}  // namespace

Experiment Experiment::load(const std::string& path, const std::vector<std::string>& overrides) {
  SHRINK_CHECK(exists(path), path << ": no such experiment file");
  return from_yaml(detail::load_yaml_file(path), path, overrides);
}

Experiment Experiment::parse(const std::string& text, const std::string& path,
                             const std::vector<std::string>& overrides) {
  return from_yaml(detail::load_yaml_text(text, path), path, overrides);
}

Experiment Experiment::from_yaml(YAML::Node root, const std::string& path,
                                 const std::vector<std::string>& overrides) {
  SHRINK_CHECK(root.IsMap(), path << ": expected a mapping with model, data, compress, ...");
  detail::OverrideScope override_scope;
  for (const auto& o : overrides) apply_override(root, o);

  Experiment x;
  x.file = path;
  const std::string base = fs::absolute(path).parent_path().string();
  MapReader r(root, path, "",
              {"model", "seed", "threads", "plugin_paths", "data", "pretrain", "compress",
               "finetune", "evaluate", "export", "distributed"});
  SHRINK_CHECK(r.has("model"), path << ": model: required (a TorchScript file)");
  x.model = resolve_path(base, r.node("model"), r.str("model", ""));
  SHRINK_CHECK(exists(x.model), r.where("model") << ": model: no such file " << x.model);
  x.seed = r.integer("seed", 0, 0);
  x.threads = r.integer("threads", 0, 0, kMaxThreads);
  const std::vector<std::string> plugin_paths = r.strings("plugin_paths");
  for (std::size_t i = 0; i < plugin_paths.size(); ++i) {
    x.plugin_paths.push_back(resolve_path(base, r.node("plugin_paths")[i], plugin_paths[i]));
  }

  read_data(r, path, base, x);
  x.pretrain = read_train(r.node("pretrain"), path, "pretrain");
  x.finetune = read_train(r.node("finetune"), path, "finetune");

  if (r.has("compress")) {
    const YAML::Node stages = r.node("compress");
    SHRINK_CHECK(stages.IsSequence(), r.where("compress")
                                          << ": compress: expected a list of stages");
    int i = 0;
    for (const auto& stage : stages) {
      x.compress.push_back(read_stage(stage, path, "compress[" + std::to_string(i++) + "]"));
    }
  }
  x.evaluate = r.boolean("evaluate", true);
  read_export(r, path, base, x);
  if (r.has("distributed")) x.distributed = read_distributed(r.node("distributed"), path);
  YAML::Emitter out;
  out << root;
  x.resolved_yaml = out.c_str();
  return x;
}

}  // namespace shrink
