#include <shrink/core/error.hpp>
#include <shrink/core/logging.hpp>
#include <shrink/core/version.hpp>
#include <shrink/host/host_api.hpp>
#include <shrink/host/plugin_registry.hpp>
#include <shrink/host/shared_library.hpp>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

namespace fs = std::filesystem;

namespace shrink {
namespace {

// Libraries are never unloaded: dlclose of a library that links LibTorch crashes at exit
// (pytorch#46171). The vector is leaked on purpose so no destructor runs at exit either.
std::vector<boost::dll::shared_library>& keep_loaded() {
  static auto* libraries = new std::vector<boost::dll::shared_library>();
  return *libraries;
}

// "torch=1.13.1;cxx11_abi=1;compiler=gcc 12.2" -> value of `key`, or "" when absent.
std::string tag_value(const std::string& tag, const std::string& key) {
  std::stringstream in(tag);
  std::string item;
  while (std::getline(in, item, ';')) {
    auto eq = item.find('=');
    if (eq != std::string::npos && item.substr(0, eq) == key) return item.substr(eq + 1);
  }
  return "";
}

std::string text_or(const char* text, const char* fallback) { return text ? text : fallback; }

// Minimum sizes: everything up to and including the last field of ABI 1.0 that a reader needs.
constexpr std::size_t kMinPluginDescriptor =
    offsetof(shrink_plugin_descriptor, algorithms) + sizeof(void*);
constexpr std::size_t kMinAlgorithmDescriptor =
    offsetof(shrink_algorithm_descriptor, destroy) + sizeof(void*);

// Checks one algorithm descriptor; returns "" or what is wrong.
std::string check_algorithm(const shrink_algorithm_descriptor* a, uint32_t index) {
  std::string where = "algorithm #" + std::to_string(index);
  if (a == nullptr) return where + " is NULL";
  if (a->struct_size < kMinAlgorithmDescriptor) {
    return where + " has struct_size " + std::to_string(a->struct_size) + ", at least " +
           std::to_string(kMinAlgorithmDescriptor) + " expected";
  }
  if (a->name == nullptr || a->name[0] == '\0') return where + " has no name";
  where = "algorithm '" + std::string(a->name) + "'";
  if (a->create == nullptr || a->destroy == nullptr) return where + " has no create/destroy";
  if (a->kinds & SHRINK_KIND_QUANTIZER) {
    const shrink_quantizer_api* q =
        SHRINK_HAS_FIELD(a, shrink_algorithm_descriptor, quantizer) ? a->quantizer : nullptr;
    if (q == nullptr || !SHRINK_HAS_FIELD(q, shrink_quantizer_api, quantize_output) ||
        q->setup_site == nullptr || q->quantize_weight == nullptr || q->quantize_input == nullptr ||
        q->quantize_output == nullptr) {
      return where + " is declared a quantizer but its quantizer table is missing or incomplete";
    }
  }
  if (a->kinds & (SHRINK_KIND_WEIGHT_MASKER | SHRINK_KIND_PRUNER)) {
    const shrink_masker_api* m =
        SHRINK_HAS_FIELD(a, shrink_algorithm_descriptor, masker) ? a->masker : nullptr;
    if (m == nullptr || m->calc_mask == nullptr) {
      return where + " is declared a masker but has no calc_mask";
    }
  }
  if (a->kinds & SHRINK_KIND_DATA_SOURCE) {
    const shrink_data_source_api* s =
        SHRINK_HAS_FIELD(a, shrink_algorithm_descriptor, data_source) ? a->data_source : nullptr;
    if (s == nullptr || !SHRINK_HAS_FIELD(s, shrink_data_source_api, get) ||
        s->describe == nullptr || s->get == nullptr) {
      return where +
             " is declared a data source but its data_source table is missing or "
             "incomplete";
    }
  }
  if (a->kinds == 0) {
    return where + " declares no kind (quantizer, masker, pruner or data source)";
  }
  return "";
}

std::string executable_dir() {
  try {
    return boost::dll::program_location().parent_path().string();
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace

const char* to_string(PathOrigin origin) {
  switch (origin) {
    case PathOrigin::kExperiment:
      return "experiment";
    case PathOrigin::kCommandLine:
      return "--plugin-path";
    case PathOrigin::kEnvironment:
      return "SHRINK_PLUGIN_PATH";
    case PathOrigin::kInstalled:
      return "installed";
  }
  return "?";
}

std::string AlgorithmInfo::kinds_text() const {
  std::string out;
  auto add = [&](bool on, const char* name) {
    if (on) out += (out.empty() ? "" : "+") + std::string(name);
  };
  add(is_quantizer(), "quantizer");
  add(is_masker() && !is_pruner(), "masker");
  add(is_pruner(), "pruner");
  add(is_data_source(), "data-source");
  return out;
}

std::string AlgorithmInfo::capabilities_text() const {
  std::string out;
  auto add = [&](uint64_t bit, const char* name) {
    if (capabilities & bit) out += (out.empty() ? "" : ",") + std::string(name);
  };
  add(SHRINK_CAP_CALIBRATION, "calibration");
  add(SHRINK_CAP_TRAINING, "training");
  add(SHRINK_CAP_EXPORT, "export");
  add(SHRINK_CAP_QUANT_GRAD, "quant-grad");
  add(SHRINK_CAP_RANKS_IN_TRAINING, "ranks-in-training");
  return out.empty() ? "-" : out;
}

std::string AlgorithmInfo::display_name() const {
  const char* kind = is_quantizer()     ? "quantizer"
                     : is_pruner()      ? "pruner"
                     : is_data_source() ? "data source"
                                        : "masker";
  const std::string library = plugin != nullptr ? plugin->name : name;
  return "plugin '" + library + "' (" + kind + " '" + name + "')";
}

std::string installed_plugin_dir() {
  std::string dir = executable_dir();
  if (dir.empty()) return "";
  return (fs::path(dir) / ".." / "lib" / "shrink" / "plugins").lexically_normal().string();
}

std::vector<SearchPath> plugin_search_paths(const std::vector<std::string>& experiment_paths,
                                            const std::vector<std::string>& command_line_paths) {
  std::vector<SearchPath> paths;
  for (const auto& p : experiment_paths) paths.push_back({p, PathOrigin::kExperiment});
  for (const auto& p : command_line_paths) paths.push_back({p, PathOrigin::kCommandLine});
  if (const char* env = std::getenv("SHRINK_PLUGIN_PATH")) {
    std::stringstream in(env);
    std::string item;
    while (std::getline(in, item, ':')) {
      if (!item.empty()) paths.push_back({item, PathOrigin::kEnvironment});
    }
  }
  std::string installed = installed_plugin_dir();
  if (!installed.empty()) paths.push_back({installed, PathOrigin::kInstalled});
  return paths;
}

PluginRegistry::PluginRegistry() = default;
PluginRegistry::~PluginRegistry() = default;

bool PluginRegistry::fail(const Candidate& candidate, const std::string& message) {
  failures_.push_back({candidate.file, candidate.origin, candidate.requested, message});
  logging::warn(candidate.file + ": " + message);
  return false;
}

bool PluginRegistry::refuse(const Candidate& candidate, const shrink_plugin_descriptor& d,
                            const std::string& declared, const std::string& message) {
  LoadFailure failure{candidate.file, candidate.origin, candidate.requested, message};
  failure.refused = true;
  failure.declared = declared;
  // Another major may lay the descriptor out differently: only its version fields are readable.
  if (d.abi_major == SHRINK_ABI_VERSION_MAJOR && d.struct_size >= kMinPluginDescriptor &&
      (d.algorithm_count == 0 || d.algorithms != nullptr)) {
    failure.algorithms_known = true;
    for (uint32_t i = 0; i < d.algorithm_count; ++i) {
      const shrink_algorithm_descriptor* a = d.algorithms[i];
      if (a != nullptr && SHRINK_HAS_FIELD(a, shrink_algorithm_descriptor, name) && a->name) {
        failure.algorithms.push_back(a->name);
      }
    }
  }
  failures_.push_back(std::move(failure));
  logging::warn(candidate.file + ": " + message);
  return false;
}

void PluginRegistry::discover(const std::vector<SearchPath>& paths) {
  const std::size_t loaded_before = plugins_.size();
  const std::size_t failed_before = failures_.size();
  for (const auto& search : paths) {
    std::error_code ec;
    const bool must_exist =
        search.origin == PathOrigin::kExperiment || search.origin == PathOrigin::kCommandLine;
    if (!fs::exists(search.path, ec)) {
      if (must_exist) {
        fail({search.path, search.origin, true},
             std::string("no such file or folder (given by ") + to_string(search.origin) + ")");
      } else {
        logging::debug("plugin folder " + search.path + " (" + to_string(search.origin) +
                       ") does not exist");
      }
      continue;
    }
    if (!fs::is_directory(search.path, ec)) {
      load_file(search.path, search.origin, must_exist);
      continue;
    }
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(search.path, ec)) {
      if (entry.is_regular_file(ec)) files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
    logging::debug("searching " + search.path + " (" + to_string(search.origin) +
                   "): " + std::to_string(files.size()) + " files");
    for (const auto& file : files) load_file(file, search.origin, false);
  }
  // One line by default; each plugin's own line is at debug level.
  std::set<std::string> folders;
  for (std::size_t i = loaded_before; i < plugins_.size(); ++i) {
    folders.insert(fs::path(plugins_[i]->file).parent_path().string());
  }
  const std::size_t n = plugins_.size() - loaded_before;
  const std::size_t failed = failures_.size() - failed_before;
  logging::info(std::to_string(n) + (n == 1 ? " plugin" : " plugins") + " from " +
                std::to_string(folders.size()) + (folders.size() == 1 ? " folder" : " folders") +
                (failed == 0 ? "" : " (" + std::to_string(failed) + " skipped, see above)"));
}

namespace {

// The entry point's descriptor, or nullptr and `problem`. The library stays loaded either way.
const shrink_plugin_descriptor* open_plugin(const std::string& file, std::string& problem) {
  boost::dll::shared_library library;
  try {
    library.load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    problem = std::string("cannot be loaded: ") + e.what();
    return nullptr;
  }
  keep_loaded().push_back(library);
  if (!library.has(SHRINK_PLUGIN_ENTRY_SYMBOL)) {
    problem = "not a Shrink plugin: it exports no '" SHRINK_PLUGIN_ENTRY_SYMBOL
              "' (build it with shrink_add_plugin and one SHRINK_PLUGIN block)";
    return nullptr;
  }
  auto entry = library.get<const shrink_plugin_descriptor*(const shrink_host_api*)>(
      SHRINK_PLUGIN_ENTRY_SYMBOL);
  const shrink_plugin_descriptor* d = nullptr;
  try {
    d = entry(host_api());
  } catch (const std::exception& e) {
    problem = std::string("entry point threw: ") + e.what();
    return nullptr;
  } catch (...) {
    problem = "entry point threw an unknown exception";
    return nullptr;
  }
  if (d == nullptr) {
    problem = "entry point returned no descriptor (the plugin's log lines above say why)";
  } else if (d->struct_size < offsetof(shrink_plugin_descriptor, abi_minor) + sizeof(uint16_t)) {
    problem = "descriptor is too small to hold an ABI version";
    return nullptr;
  }
  return d;
}

// Why this host refuses a readable descriptor: what it declared ("built for ABI 2.4") and the
// message; both empty when it is acceptable.
std::pair<std::string, std::string> refusal(const shrink_plugin_descriptor& d) {
  const std::string abi = std::to_string(d.abi_major) + "." + std::to_string(d.abi_minor);
  if (d.abi_major != SHRINK_ABI_VERSION_MAJOR) {
    std::ostringstream msg;
    msg << "built for plugin ABI " << abi << ", this Shrink " << version() << " speaks ABI "
        << SHRINK_ABI_VERSION_MAJOR << "." << SHRINK_ABI_VERSION_MINOR
        << ": rebuild the plugin against the SDK of this Shrink "
        << "(find_package(Shrink) then shrink_add_plugin)";
    return {"built for ABI " + abi, msg.str()};
  }
  if (d.struct_size < kMinPluginDescriptor) return {"", ""};  // broken, not refused: see below
  const std::string build_tag = text_or(d.build_tag, "");
  const std::string plugin_torch = tag_value(build_tag, "torch");
  if (!plugin_torch.empty() && plugin_torch != torch_version()) {
    return {"built against LibTorch " + plugin_torch,
            "built against LibTorch " + plugin_torch + ", this Shrink uses LibTorch " +
                torch_version() + ": rebuild the plugin against this installation"};
  }
  const std::string plugin_abi = tag_value(build_tag, "cxx11_abi");
  if (!plugin_abi.empty() && plugin_abi != std::to_string(cxx11_abi())) {
    return {"built with _GLIBCXX_USE_CXX11_ABI=" + plugin_abi,
            "built with _GLIBCXX_USE_CXX11_ABI=" + plugin_abi + ", this Shrink uses " +
                std::to_string(cxx11_abi()) +
                ": rebuild the plugin with the flags of find_package(Shrink)"};
  }
  return {"", ""};
}

// A pruner built before ABI 1.5 said "ranks by what it observes in training" with one_shot == 0.
uint64_t capabilities_of(const shrink_algorithm_descriptor& a, uint16_t abi_minor) {
  uint64_t caps = a.capabilities;
  if (abi_minor < 5 && (a.kinds & SHRINK_KIND_PRUNER) &&
      SHRINK_HAS_FIELD(&a, shrink_algorithm_descriptor, pruner) && a.pruner != nullptr &&
      SHRINK_HAS_FIELD(a.pruner, shrink_pruner_api, one_shot) && a.pruner->one_shot == 0) {
    caps |= SHRINK_CAP_RANKS_IN_TRAINING;
  }
  return caps;
}

// A NULL-terminated array of key names (site_keys, ABI 1.5; data_keys, 1.6), bounded so that a
// missing terminator cannot run away.
std::vector<std::string> keys_of(const char* const* array, const char* field, const char* name,
                                 std::string& problem) {
  std::vector<std::string> keys;
  if (array == nullptr) return keys;
  constexpr std::size_t kMaxKeys = 256;
  for (std::size_t i = 0; array[i] != nullptr; ++i) {
    if (i == kMaxKeys || array[i][0] == '\0') {
      problem = "algorithm '" + std::string(name) + "' declares " + field +
                " that are empty or not NULL-terminated";
      return {};
    }
    keys.emplace_back(array[i]);
  }
  return keys;
}

}  // namespace

std::unique_ptr<PluginInfo> PluginRegistry::read_plugin(const shrink_plugin_descriptor& d,
                                                        const std::string& file,
                                                        std::string& problem) {
  if (d.struct_size < kMinPluginDescriptor) {
    problem = "descriptor has struct_size " + std::to_string(d.struct_size) + ", at least " +
              std::to_string(kMinPluginDescriptor) + " expected for ABI 1";
    return nullptr;
  }
  if (d.name == nullptr || d.name[0] == '\0') {
    problem = "descriptor has no plugin name";
    return nullptr;
  }
  if (d.algorithm_count > 0 && d.algorithms == nullptr) {
    problem = "descriptor lists algorithms but the array is NULL";
    return nullptr;
  }
  auto info = std::make_unique<PluginInfo>();
  info->name = d.name;
  info->version = text_or(d.version, "?");
  info->file = file;
  info->build_tag = text_or(d.build_tag, "");
  info->abi_major = d.abi_major;
  info->abi_minor = d.abi_minor;
  for (uint32_t i = 0; i < d.algorithm_count; ++i) {
    const shrink_algorithm_descriptor* a = d.algorithms[i];
    problem = check_algorithm(a, i);
    if (!problem.empty()) return nullptr;
    AlgorithmInfo alg;
    alg.name = a->name;
    alg.description = text_or(a->description, "");
    alg.kinds = a->kinds;
    alg.capabilities = capabilities_of(*a, d.abi_minor);
    if (SHRINK_HAS_FIELD(a, shrink_algorithm_descriptor, supported_op_types)) {
      alg.supported_op_types = text_or(a->supported_op_types, "");
    }
    if (SHRINK_HAS_FIELD(a, shrink_algorithm_descriptor, site_keys)) {
      alg.site_keys = keys_of(a->site_keys, "site_keys", a->name, problem);
    }
    if (SHRINK_HAS_FIELD(a, shrink_algorithm_descriptor, data_keys) && problem.empty()) {
      alg.data_keys = keys_of(a->data_keys, "data_keys", a->name, problem);
    }
    if (!problem.empty()) return nullptr;
    alg.descriptor = a;
    info->algorithms.push_back(alg);
  }
  return info;
}

std::string PluginRegistry::duplicate_name(const PluginInfo& info) {
  // The earlier file (search order) stays listed; the name is marked conflicting so that using it
  // is an error naming both files.
  for (const auto& alg : info.algorithms) {
    auto it = by_name_.find(alg.name);
    if (it != by_name_.end()) {
      const std::string msg = "duplicate algorithm name '" + alg.name + "': provided by " +
                              it->second->plugin->file + " and by " + info.file +
                              "; remove one of them from the plugin path";
      conflicts_[alg.name] = msg;
      return msg;
    }
  }
  return "";
}

void PluginRegistry::accept(std::unique_ptr<PluginInfo> info) {
  if (info->abi_minor > SHRINK_ABI_VERSION_MINOR) {
    logging::debug(info->file + ": built for the newer ABI 1." + std::to_string(info->abi_minor) +
                   "; fields this host does not know are ignored");
  }
  PluginInfo* stored = info.get();
  plugins_.push_back(std::move(info));
  std::string names;
  for (auto& alg : stored->algorithms) {
    alg.plugin = stored;
    by_name_[alg.name] = &alg;
    names += (names.empty() ? "" : ", ") + alg.name;
  }
  logging::debug("loaded plugin " + stored->name + " " + stored->version + " (" + names +
                 ") from " + stored->file);
}

bool PluginRegistry::load_file(const std::string& given, PathOrigin origin, bool requested) {
  std::error_code ec;
  fs::path canonical = fs::canonical(given, ec);
  const Candidate candidate{ec ? given : canonical.string(), origin, requested};
  const std::string& file = candidate.file;
  if (seen_files_.count(file)) {
    logging::debug(file + ": already loaded");
    return true;
  }
  seen_files_[file] = true;
  if (ec || !fs::is_regular_file(file, ec)) return fail(candidate, "not a regular file");
  std::string problem = check_shared_library(file);
  if (!problem.empty()) return fail(candidate, problem);
  // From here on the library stays loaded, accepted or not.
  const shrink_plugin_descriptor* d = open_plugin(file, problem);
  if (d == nullptr) return fail(candidate, problem);
  const auto refused = refusal(*d);
  if (!refused.second.empty()) return refuse(candidate, *d, refused.first, refused.second);
  std::unique_ptr<PluginInfo> info = read_plugin(*d, file, problem);
  if (!info) return fail(candidate, problem);
  problem = duplicate_name(*info);
  if (!problem.empty()) return fail(candidate, problem);
  accept(std::move(info));
  return true;
}

const AlgorithmInfo* PluginRegistry::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::string PluginRegistry::refused_note(const std::string& algorithm) const {
  // A refused file that provides it says so outright; one whose names cannot be read (another
  // ABI major) may provide it.
  for (const auto& f : failures_) {
    if (f.refused && f.algorithms_known &&
        std::find(f.algorithms.begin(), f.algorithms.end(), algorithm) != f.algorithms.end()) {
      return "algorithm '" + algorithm + "' is in " + f.file + ", which was refused: " + f.message;
    }
  }
  std::string unknown;
  for (const auto& f : failures_) {
    if (f.refused && !f.algorithms_known) {
      unknown += (unknown.empty() ? "" : "; ") + fs::path(f.file).filename().string() +
                 " refused: " + f.declared + " (" + f.file + ")";
    }
  }
  if (unknown.empty()) return "";
  return "no loaded plugin provides algorithm '" + algorithm + "', and plugins that may were " +
         "refused: " + unknown + ". Rebuild them against the SDK of this Shrink (ABI " +
         std::to_string(SHRINK_ABI_VERSION_MAJOR) + "." + std::to_string(SHRINK_ABI_VERSION_MINOR) +
         ")";
}

const AlgorithmInfo& PluginRegistry::require(const std::string& name) const {
  auto conflict = conflicts_.find(name);
  if (conflict != conflicts_.end()) throw Error(conflict->second);
  const AlgorithmInfo* found = find(name);
  if (found != nullptr) return *found;
  const std::string refused = refused_note(name);
  if (!refused.empty()) throw Error(refused);
  std::string available;
  for (const auto& kv : by_name_) available += (available.empty() ? "" : ", ") + kv.first;
  throw Error("no plugin provides algorithm '" + name +
              "' (available: " + (available.empty() ? "none" : available) +
              "); add its folder with --plugin-path or SHRINK_PLUGIN_PATH");
}

}  // namespace shrink
