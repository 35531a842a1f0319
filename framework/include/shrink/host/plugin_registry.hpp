// Discovery and loading of algorithm plugins.
//
// Search order (fixed): paths named by the experiment, --plugin-path, SHRINK_PLUGIN_PATH (':'
// separated), the installed plugin folder (<prefix>/lib/shrink/plugins beside the executable).
// A folder contributes every regular file in it, in name order; a file is one candidate. A
// candidate that fails to load gets one warning line, is recorded as a LoadFailure and discovery
// goes on; one that loads gets a debug line, and discovery ends with one info line counting what
// loaded. Loaded libraries stay loaded for the life of the process: a library that links LibTorch
// cannot be unloaded safely.
#pragma once

#include <shrink/plugin_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace shrink {

// Where a search path came from, in search order.
enum class PathOrigin { kExperiment, kCommandLine, kEnvironment, kInstalled };
const char* to_string(PathOrigin origin);

struct SearchPath {
  std::string path;
  PathOrigin origin;
};

struct PluginInfo;

struct AlgorithmInfo {
  std::string name;
  std::string description;
  uint32_t kinds = 0;              // SHRINK_KIND_* bits
  uint64_t capabilities = 0;       // SHRINK_CAP_* bits
  std::string supported_op_types;  // "" = any
  // Per-site config keys the algorithm reads besides the framework's (ABI 1.5 site_keys).
  std::vector<std::string> site_keys;
  // The keys of an experiment's `data:` mapping a data source reads (ABI 1.6 data_keys).
  std::vector<std::string> data_keys;
  const shrink_algorithm_descriptor* descriptor = nullptr;
  const PluginInfo* plugin = nullptr;  // nullptr only for an AlgorithmInfo made by hand (tests)

  bool is_quantizer() const { return (kinds & SHRINK_KIND_QUANTIZER) != 0; }
  bool is_masker() const { return (kinds & SHRINK_KIND_WEIGHT_MASKER) != 0; }
  bool is_pruner() const { return (kinds & SHRINK_KIND_PRUNER) != 0; }
  bool is_data_source() const { return (kinds & SHRINK_KIND_DATA_SOURCE) != 0; }
  // A pruner that ranks by what it observes while its stage trains (taylor): its masks come at
  // the end of each stretch of training, and its stage must train. Declared with
  // SHRINK_CAP_RANKS_IN_TRAINING; a pruner built against ABI 1.4 or older said it with
  // `one_shot == 0`, which the registry turns into that capability when it loads the plugin.
  bool ranks_in_training() const { return (capabilities & SHRINK_CAP_RANKS_IN_TRAINING) != 0; }
  // "plugin 'pruning' (pruner 'taylor')": how messages name the algorithm.
  std::string display_name() const;
  // "quantizer", "masker", "pruner" joined with '+'.
  std::string kinds_text() const;
  // "calibration,training,export,quant-grad,ranks-in-training" as declared.
  std::string capabilities_text() const;
};

struct PluginInfo {
  std::string name;
  std::string version;
  std::string file;  // canonical path
  std::string build_tag;
  uint16_t abi_major = 0;
  uint16_t abi_minor = 0;
  std::vector<AlgorithmInfo> algorithms;
};

struct LoadFailure {
  std::string file;
  PathOrigin origin;
  bool requested = false;  // named explicitly (a file, or a path that must exist)
  std::string message;     // one line: what is wrong and what to do
  // A Shrink plugin that was read and refused (another ABI major, another LibTorch or C++ ABI),
  // with what it declared as far as it can be read: the algorithm names only when the
  // descriptor's layout is this host's (same ABI major).
  bool refused = false;
  std::string declared;                 // "built for ABI 2.4", "built against LibTorch 2.1.0"
  bool algorithms_known = false;        // whether `algorithms` could be read
  std::vector<std::string> algorithms;  // the names it provides
};

// Every search path in order: experiment paths, command-line paths, SHRINK_PLUGIN_PATH, installed.
std::vector<SearchPath> plugin_search_paths(const std::vector<std::string>& experiment_paths,
                                            const std::vector<std::string>& command_line_paths);

// The installed plugin folder: <dir of the running executable>/../lib/shrink/plugins.
std::string installed_plugin_dir();

class PluginRegistry {
 public:
  PluginRegistry();
  ~PluginRegistry();
  PluginRegistry(const PluginRegistry&) = delete;
  PluginRegistry& operator=(const PluginRegistry&) = delete;

  // Loads every candidate under `paths`, in order. Never throws for a bad candidate.
  void discover(const std::vector<SearchPath>& paths);
  // Loads one file; returns false and records a failure when it cannot.
  bool load_file(const std::string& file, PathOrigin origin, bool requested);

  const std::vector<std::unique_ptr<PluginInfo>>& plugins() const { return plugins_; }
  const std::vector<LoadFailure>& failures() const { return failures_; }

  // nullptr when no loaded plugin provides `name`.
  const AlgorithmInfo* find(const std::string& name) const;
  // Like find, but throws shrink::Error naming the algorithm and the available ones, both files
  // when two plugins provide the same name, or the refused file that provides it (or may: one
  // built for another ABI major) and why it was refused.
  const AlgorithmInfo& require(const std::string& name) const;

 private:
  struct Candidate {
    std::string file;
    PathOrigin origin;
    bool requested;
  };
  // Records a failure, logs one warning line and returns false.
  bool fail(const Candidate& candidate, const std::string& message);
  bool refuse(const Candidate& candidate, const shrink_plugin_descriptor& d,
              const std::string& declared, const std::string& message);
  // Checks the descriptor's algorithms and names; nullptr and `problem` when one is broken.
  std::unique_ptr<PluginInfo> read_plugin(const shrink_plugin_descriptor& d,
                                          const std::string& file, std::string& problem);
  // "" or the message naming both files of a name another plugin already provides.
  std::string duplicate_name(const PluginInfo& info);
  void accept(std::unique_ptr<PluginInfo> info);
  std::string refused_note(const std::string& algorithm) const;

  std::vector<std::unique_ptr<PluginInfo>> plugins_;
  std::vector<LoadFailure> failures_;
  std::map<std::string, const AlgorithmInfo*> by_name_;
  std::map<std::string, std::string> conflicts_;  // name -> message naming both files
  std::map<std::string, bool> seen_files_;
};

}  // namespace shrink
