// The `shrink` command line.
#include "check_command.hpp"
#include "isa_bench.hpp"
#include "launcher.hpp"

#include <shrink/config/config_list.hpp>
#include <shrink/config/experiment.hpp>
#include <shrink/core/error.hpp>
#include <shrink/core/interrupt.hpp>
#include <shrink/core/logging.hpp>
#include <shrink/core/one_line_error.hpp>
#include <shrink/core/version.hpp>
#include <shrink/dist/communicator.hpp>
#include <shrink/dist/world.hpp>
#include <shrink/export/int8_export.hpp>
#include <shrink/graph/measure.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/host/plugin_check.hpp>
#include <shrink/host/plugin_registry.hpp>
#include <shrink/run/pipeline.hpp>
#include <shrink/run/plan.hpp>

#include <torch/script.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

namespace {

struct GlobalOptions {
  std::vector<std::string> plugin_paths;
  std::string log_level;  // "": SHRINK_LOG, SPDLOG_LEVEL, else info
};

// Loads plugins from every search path; returns the registry.
std::unique_ptr<shrink::PluginRegistry> discover(const GlobalOptions& global) {
  auto registry = std::make_unique<shrink::PluginRegistry>();
  registry->discover(shrink::plugin_search_paths({}, global.plugin_paths));
  return registry;
}

std::string abi_text(const shrink::PluginInfo& p) {
  return std::to_string(p.abi_major) + "." + std::to_string(p.abi_minor);
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()), 0);
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

// `shrink plugins`: lists what loaded. Non-zero only when something the user asked for (a plugin
// file named on the command line, or an algorithm named as an argument) failed or is missing.
int run_plugins(const GlobalOptions& global, bool json, const std::vector<std::string>& names) {
  auto registry = discover(global);
  int status = 0;
  for (const auto& failure : registry->failures()) {
    if (failure.requested) status = 1;
  }
  std::vector<const shrink::AlgorithmInfo*> selected;
  for (const auto& plugin : registry->plugins()) {
    for (const auto& alg : plugin->algorithms) {
      if (names.empty() || std::count(names.begin(), names.end(), alg.name)) {
        selected.push_back(&alg);
      }
    }
  }
  for (const auto& name : names) {
    try {
      registry->require(name);
    } catch (const shrink::Error& e) {
      shrink::logging::error(e.what());
      status = 1;
    }
  }
  if (json) {
    nlohmann::json out = nlohmann::json::object();
    out["shrink_version"] = shrink::version();
    out["abi"] =
        std::to_string(SHRINK_ABI_VERSION_MAJOR) + "." + std::to_string(SHRINK_ABI_VERSION_MINOR);
    out["algorithms"] = nlohmann::json::array();
    for (const auto* alg : selected) {
      out["algorithms"].push_back({{"name", alg->name},
                                   {"description", alg->description},
                                   {"kind", alg->kinds_text()},
                                   {"capabilities", alg->capabilities_text()},
                                   {"op_types", alg->supported_op_types},
                                   {"site_keys", alg->site_keys},
                                   {"data_keys", alg->data_keys},
                                   {"plugin", alg->plugin->name},
                                   {"version", alg->plugin->version},
                                   {"abi", abi_text(*alg->plugin)},
                                   {"build", alg->plugin->build_tag},
                                   {"file", alg->plugin->file}});
    }
    out["failures"] = nlohmann::json::array();
    for (const auto& f : registry->failures()) {
      nlohmann::json failure = {{"file", f.file},
                                {"origin", shrink::to_string(f.origin)},
                                {"requested", f.requested},
                                {"refused", f.refused},
                                {"message", f.message}};
      if (f.refused) failure["declared"] = f.declared;
      if (f.algorithms_known) failure["algorithms"] = f.algorithms;
      out["failures"].push_back(failure);
    }
    std::cout << out.dump(2) << "\n";
    return status;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "VERSION", "ABI", "KIND", "CAPABILITIES", "FILE"}};
  for (const auto* alg : selected) {
    rows.push_back({alg->name, alg->plugin->version, abi_text(*alg->plugin), alg->kinds_text(),
                    alg->capabilities_text(), alg->plugin->file});
  }
  if (selected.empty()) {
    std::cout << "no plugins found; search path:";
    for (const auto& p : shrink::plugin_search_paths({}, global.plugin_paths)) {
      std::cout << " " << p.path;
    }
    std::cout << "\n";
  } else {
    print_table(rows);
  }
  if (!registry->failures().empty()) {
    std::cout << registry->failures().size() << " candidate(s) failed to load (see above)\n";
  }
  return status;
}

// `shrink inspect model.pt [--config-list FILE]`: the model's op instances, and the sites the
// config_list(s) in FILE would create on each.
int run_inspect(const std::string& model_path, const std::string& config_path, bool json) {
  shrink::Model model = shrink::Model::load(model_path);
  std::map<std::string, std::vector<std::string>> sites;  // op -> "stage N: target (dtype)"
  std::vector<std::string> placed;                        // a preset's sites and notes: why
  std::map<std::string, std::vector<std::string>> why;    // op -> "target: why" (a preset's)
  if (!config_path.empty()) {
    auto lists = shrink::ConfigList::load_file(config_path);
    for (std::size_t stage = 0; stage < lists.size(); ++stage) {
      const std::string prefix = lists.size() > 1 ? "stage" + std::to_string(stage) + ":" : "";
      std::vector<std::string> notes;
      for (const auto& site : shrink::plan_quantization_sites(lists[stage], model, notes)) {
        sites[site.op_name].push_back(prefix + site.target + "(" +
                                      *site.config.find("quant_dtype") + "," +
                                      *site.config.find("quant_scheme") + ")");
        if (!site.why.empty()) {
          placed.push_back(prefix + site.key() + ": " + site.why);
          why[site.op_name].push_back(prefix + site.target + ": " + site.why);
        }
      }
      for (const auto& note : notes) placed.push_back(prefix + note);
    }
  }
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& op : model.ops()) {
      out.push_back({{"name", op.name},
                     {"type", op.type},
                     {"kind", op.functional ? "functional" : "module"},
                     {"sites", sites[op.name]},
                     {"why", why[op.name]}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"OP", "TYPE", "KIND", "SITES"}};
  std::size_t n_sites = 0;
  for (const auto& op : model.ops()) {
    std::string text;
    for (const auto& s : sites[op.name]) text += (text.empty() ? "" : " ") + s;
    n_sites += sites[op.name].size();
    rows.push_back(
        {op.name, op.type, op.functional ? "functional" : "module", text.empty() ? "-" : text});
  }
  print_table(rows);
  for (const auto& line : placed) std::cout << line << "\n";
  std::cout << model.ops().size() << " ops";
  if (!config_path.empty()) std::cout << ", " << n_sites << " sites from " << config_path;
  std::cout << "\n";
  return 0;
}

struct RunArgs {
  std::string experiment;
  std::string out;
  std::vector<std::string> overrides;
  bool print_plan = false;
  bool resume = false;
  bool fresh = false;
  bool check_plugins = false;
  int64_t stop_after_epochs = 0;
  int nproc = 0;                  // --nproc: as many local ranks; 0: this process alone
  std::vector<std::string> argv;  // the command line, for --nproc's workers
};

// A run stopped by Ctrl-C or SIGTERM: what it kept and how to go on; the shell's exit status for
// the signal (130, 143).
int report_interrupt(const RunArgs& args, const shrink::RunSummary& summary,
                     const shrink::WorldPlace& place) {
  std::cerr << "shrink: interrupted by " << shrink::signal_name(summary.interrupted) << "; ";
  if (summary.checkpoint.empty()) {
    std::cerr << "no epoch had ended, so nothing was kept\n";
  } else {
    // A rank started by --nproc resumes under it; one started by another launcher, under that.
    const char* nproc = std::getenv("SHRINK_NPROC");
    std::cerr << summary.out_dir << "/checkpoint.pt holds " << summary.checkpoint
              << "; continue with: shrink run " << args.experiment
              << (args.out.empty() ? "" : " --out " + args.out) << " --resume"
              << (nproc != nullptr ? std::string(" --nproc ") + nproc : "")
              << (nproc == nullptr && place.distributed()
                      ? " on " + std::to_string(place.world) + " ranks"
                      : "")
              << (args.overrides.empty() ? "" : " (and the same --set options)") << "\n";
  }
  return 128 + summary.interrupted;
}

// `shrink run exp.yaml --nproc N`: everything checked here once (one line for bad input, not one
// per rank), then N ranks started as torchrun would.
int run_ranks(const GlobalOptions& global, const RunArgs& args,
              const shrink::Experiment& experiment) {
  const shrink::WorldPlace place = shrink::world_place_from_environment();
  SHRINK_CHECK(!place.distributed(), "--nproc: this process is already rank "
                                         << place.rank << " of " << place.world << " (started by "
                                         << place.launcher << "); leave --nproc to one of them");
  shrink::PluginRegistry registry;
  // Rank 0 says what it loads; said here too, it would be said twice.
  if (global.log_level.empty()) shrink::logging::set_level("warn");
  registry.discover(shrink::plugin_search_paths(experiment.plugin_paths, global.plugin_paths));
  shrink::RunOptions check;
  check.out_dir = args.out;
  check.print_plan = true;
  check.world.world = check.world.local_world = args.nproc;  // as rank 0 will see it
  std::ostringstream plan;
  check.out = &plan;
  shrink::run_experiment(experiment, registry, check);
  if (args.print_plan) {
    std::cout << plan.str();
    return 0;
  }
  return shrink_cli::launch_local(args.nproc, args.argv);
}

// `shrink run exp.yaml`: the whole experiment; results in the output folder.
int run_run(const GlobalOptions& global, const RunArgs& args) {
  if (args.check_plugins) shrink::set_value_checks_by_default(true);
  const shrink::WorldPlace place = shrink::world_place_from_environment();
  // Rank 0 speaks for the run: the others say only what goes wrong.
  if (place.rank != 0 && global.log_level.empty()) shrink::logging::set_level("warn");
  const shrink::Experiment experiment = shrink::Experiment::load(args.experiment, args.overrides);
  if (args.nproc > 0) return run_ranks(global, args, experiment);
  shrink::PluginRegistry registry;
  registry.discover(shrink::plugin_search_paths(experiment.plugin_paths, global.plugin_paths));
  shrink::RunOptions options;
  options.out_dir = args.out;
  options.print_plan = args.print_plan;
  options.resume = args.resume;
  options.fresh = args.fresh;
  options.stop_after_epochs = args.stop_after_epochs;
  options.world = place;
  options.bench_with_isa = shrink_cli::bench_with_isa;
  shrink::catch_interrupts();
  shrink::RunSummary summary;
  try {
    summary = shrink::run_experiment(experiment, registry, options);
  } catch (const shrink::SameOnEveryRank&) {
    if (place.rank != 0) return 1;  // rank 0 says it
    throw;
  } catch (const std::exception& e) {
    // Each rank's line says which it is (a collective's own lines already do).
    const std::string line = shrink::error_line(e);
    if (!options.world.distributed() || line.rfind("rank ", 0) == 0) throw;
    throw shrink::Error("rank " + std::to_string(options.world.rank) + ": " + line);
  }
  if (summary.interrupted != 0) {
    return options.world.rank == 0 ? report_interrupt(args, summary, place)
                                   : 128 + summary.interrupted;
  }
  if (args.print_plan || summary.stopped || options.world.rank != 0) return 0;
  std::cout << std::fixed << std::setprecision(4);
  std::cout << "results in " << summary.out_dir << "\n";
  if (summary.baseline_accuracy >= 0) {
    std::cout << "  accuracy   fp32 " << summary.baseline_accuracy;
    if (summary.compressed_accuracy >= 0)
      std::cout << ", compressed " << summary.compressed_accuracy;
    if (summary.exported_accuracy >= 0) {
      std::cout << ", " << summary.exported_file << " " << summary.exported_accuracy;
    }
    if (summary.int8_accuracy >= 0) std::cout << ", model_int8.pt " << summary.int8_accuracy;
    if (summary.pruned_accuracy >= 0) std::cout << ", model_pruned.pt " << summary.pruned_accuracy;
    std::cout << "\n";
  }
  if (summary.baseline_seconds_per_epoch > 0 && summary.compressed_seconds_per_epoch > 0) {
    std::cout << std::setprecision(2) << "  epoch time fp32 " << summary.baseline_seconds_per_epoch
              << " s, compressed " << summary.compressed_seconds_per_epoch << " s ("
              << summary.compressed_seconds_per_epoch / summary.baseline_seconds_per_epoch
              << "x)\n";
  }
  for (const std::string& line : summary.latency) std::cout << "  " << line << "\n";
  return 0;
}

// `shrink export model_qat.pt --int8 -o model_int8.pt`: a fake-quant model to LibTorch's int8
// kernels. `shrink export model.pt --fold-bn -o model_folded.pt`: a float model frozen for
// inference, BatchNorms folded into the convolutions before them.
int run_export(const std::string& model, bool int8, bool fold_bn, std::string out) {
  SHRINK_CHECK(int8 != fold_bn, "export: say what to export to: --int8 or --fold-bn (one of them)");
  if (out.empty()) {
    const std::string stem = model.size() > 3 && model.substr(model.size() - 3) == ".pt"
                                 ? model.substr(0, model.size() - 3)
                                 : model;
    out =
        (stem.size() > 4 && stem.substr(stem.size() - 4) == "_qat" ? stem.substr(0, stem.size() - 4)
                                                                   : stem) +
        (int8 ? "_int8.pt" : "_folded.pt");
  }
  std::error_code ec;
  SHRINK_CHECK(!std::filesystem::is_directory(out, ec),
               "export: -o " << out << " is a folder; give the file to write, e.g. " << out << "/"
                             << std::filesystem::path(model).stem().string()
                             << (int8 ? "_int8.pt" : "_folded.pt"));
  SHRINK_CHECK(!std::filesystem::equivalent(model, out, ec),
               "export: -o " << out << " is the model itself; give another file");
  if (fold_bn) {
    SHRINK_CHECK(!shrink::runs_int8_kernels(shrink::load_torchscript(model)),
                 "export --fold-bn: " << model << " already runs int8 kernels (its BatchNorms "
                                      << "were folded when it was exported); give a float model");
    const int folded = shrink::fold_batchnorm(model, out);
    std::cout << "fold-bn: " << folded << " BatchNorm" << (folded == 1 ? "" : "s") << " folded -> "
              << out << "\n";
    return 0;
  }
  const shrink::Int8Export result = shrink::export_int8(model, out);
  std::cout << "int8: " << result.quantized_ops << " quantized ops -> " << out << "\n";
  for (const auto& line : result.float_ops) std::cout << "  float: " << line << "\n";
  for (const auto& line : result.notes) std::cout << "  note: " << line << "\n";
  return 0;
}

// `shrink bench model.pt [--int8 model_int8.pt | --vs other.pt] --shape 1,28,28 [--batch 1,64]
// [--threads 1]`: median latency of each model, measured side by side (the models take turns of
// a few calls, round by round, so that a noisy neighbour slows all alike): warm (calls back to
// back) in the table, and the speed-up cold too (a turn's first call, after the other models took
// the caches). The fp32 model runs as loaded and frozen + optimize_for_inference; a speed-up is
// against the faster of the two, the best fp32 a user can run without Shrink.
struct BenchArgs {
  std::string model;
  std::string int8;
  std::string other;  // --vs
  std::vector<int64_t> shape;
  std::vector<int64_t> batches = {1, 64};
  int threads = 1;
  int runs = 0;  // rounds; 0: enough for about a second per model and batch size
  bool json = false;
};

std::vector<std::pair<std::string, torch::jit::Module>> load_bench_models(const BenchArgs& args) {
  std::vector<std::pair<std::string, torch::jit::Module>> models;
  auto load = [](const std::string& file) {
    torch::jit::Module m = shrink::load_torchscript(file);
    m.eval();
    return m;
  };
  models.emplace_back("fp32", load(args.model));
  try {
    models.emplace_back("fp32_frozen", shrink::frozen_for_inference(models.front().second));
  } catch (const shrink::Error& e) {
    std::cerr << "bench: " << args.model << " " << e.what() << "; fp32 runs as loaded only\n";
  }
  if (!args.int8.empty()) {
    shrink::use_int8_engine();
    models.emplace_back("int8", load(args.int8));
    SHRINK_CHECK(shrink::runs_int8_kernels(models.back().second),
                 "bench: --int8 " << args.int8 << " runs no int8 kernel (no quantized:: op); "
                                  << "give model_int8.pt, or compare float models with --vs");
  }
  if (!args.other.empty()) models.emplace_back("other", load(args.other));
  return models;
}

// One table row: each model's median, the best fp32, and the compared model's speed-up over it,
// warm (the table's figures) and cold (median_latency's two medians).
nlohmann::json bench_row(const std::vector<shrink::NamedModel>& models, const shrink::LatencyRow& r,
                         bool compares) {
  nlohmann::json row = {
      {"batch", r.batch}, {"runs", r.runs}, {"calls_per_run", shrink::kCallsPerTurn}};
  std::cout << std::left << std::setw(8) << r.batch << std::fixed << std::setprecision(3);
  for (std::size_t k = 0; k < models.size(); ++k) {
    row[models[k].name + "_ms"] = r.ms[k];
    row[models[k].name + "_cold_ms"] = r.cold_ms[k];
    std::cout << std::setw(16) << r.ms[k];
  }
  const double best = r.ms[static_cast<std::size_t>(shrink::fastest(models, r.ms, "fp32"))];
  const double best_cold =
      r.cold_ms[static_cast<std::size_t>(shrink::fastest(models, r.cold_ms, "fp32"))];
  row["best_fp32_ms"] = best;
  row["best_fp32_cold_ms"] = best_cold;
  if (compares) {
    const double speedup = best / r.ms.back(), cold = best_cold / r.cold_ms.back();
    row["speedup"] = speedup;
    row["speedup_vs_loaded"] = r.ms[0] / r.ms.back();
    row["cold_speedup"] = cold;
    std::cout << std::setprecision(2) << speedup << "x / " << cold << "x"
              << (speedup < 1 ? "  (slower than the best fp32)" : "");
  }
  std::cout << std::defaultfloat << "\n";
  return row;
}

int run_bench(const BenchArgs& args) {
  SHRINK_CHECK(!args.shape.empty(),
               "bench: --shape is required (one sample's shape, e.g. 1,28,28)");
  for (int64_t d : args.shape) SHRINK_CHECK(d > 0, "bench: --shape: every size must be > 0");
  at::set_num_threads(args.threads);
  // Denormal floats (tiny weights and activations after training) take a slow path on x86 and
  // made timings swing with the weights' values; runs flush them, as training does.
  at::globalContext().setFlushDenormal(true);
  torch::NoGradGuard no_grad;
  auto models = load_bench_models(args);
  const bool compares = !args.int8.empty() || !args.other.empty();
  const std::string isa = shrink::onednn_isa();
  std::cout << "threads " << args.threads << ", oneDNN " << (isa.empty() ? "?" : isa) << "\n";
  std::cout << std::left << std::setw(8) << "batch";
  for (const auto& m : models) std::cout << std::setw(16) << (m.first + " ms");
  if (compares) std::cout << "speed-up vs best fp32, warm / cold";
  std::cout << "\n";
  std::vector<shrink::NamedModel> named;
  // The compared model (int8, or --vs, which may be) is timed fresh at each batch size.
  for (auto& m : models)
    named.push_back({m.first, &m.second, m.first == "int8" || m.first == "other"});
  std::vector<shrink::LatencyRow> rows;
  try {
    rows = shrink::latency_table(named, args.shape, args.batches, args.runs, 1000.0, 5);
  } catch (const shrink::Error& e) {
    throw shrink::Error(std::string("bench: ") + e.what());
  }
  nlohmann::json results = nlohmann::json::array();
  for (const auto& r : rows) results.push_back(bench_row(named, r, compares));
  if (args.json)
    std::cout
        << nlohmann::json{{"threads", args.threads}, {"isa", isa}, {"results", results}}.dump()
        << "\n";
  return 0;
}

// Every subcommand's arguments, and the subcommands themselves once added.
struct Cli {
  CLI::App app{"Shrink: compress TorchScript models by quantization and pruning"};
  GlobalOptions global;
  bool plugins_json = false;
  std::vector<std::string> plugin_names;
  shrink_cli::CheckArgs check;
  std::string inspect_model, inspect_config;
  bool inspect_json = false;
  RunArgs run;
  std::string export_model, export_out;
  bool export_int8 = false, export_fold_bn = false;
  BenchArgs bench;
  CLI::App *plugins_cmd = nullptr, *check_cmd = nullptr, *inspect_cmd = nullptr, *run_cmd = nullptr,
           *export_cmd = nullptr, *bench_cmd = nullptr, *help_cmd = nullptr;
};

void add_global_options(Cli& c) {
  c.app.set_version_flag("--version", std::string("shrink ") + shrink::version() + " (plugin ABI " +
                                          std::to_string(SHRINK_ABI_VERSION_MAJOR) + "." +
                                          std::to_string(SHRINK_ABI_VERSION_MINOR) + ", LibTorch " +
                                          shrink::torch_version() + ")");
  c.app.require_subcommand(1);
  c.app
      .fallthrough();  // global options may follow the subcommand: `shrink plugins --plugin-path X`
  c.app.add_option("--plugin-path", c.global.plugin_paths,
                   "Plugin file or folder to search before SHRINK_PLUGIN_PATH (repeatable)");
  c.app.add_option("--log-level", c.global.log_level,
                   "trace, debug, info, warn, error or off (default: $SHRINK_LOG, else "
                   "$SPDLOG_LEVEL, else info; debug lists each plugin loaded)");
}

void add_plugin_commands(Cli& c) {
  c.plugins_cmd = c.app.add_subcommand("plugins", "List the algorithm plugins Shrink can load");
  c.plugins_cmd->add_flag("--json", c.plugins_json, "Print JSON instead of a table");
  c.plugins_cmd->add_option("names", c.plugin_names,
                            "Only these algorithms (fails if one is missing)");

  c.check_cmd = c.app.add_subcommand(
      "check",
      "Run one algorithm once with every check on: a quantizer's weight, input and output sites "
      "(declared state, quantize, backward and parameter gradients, export_site), a masker's "
      "calc_mask and importance. Non-zero with one line on a wrong shape or dtype, a NaN or inf");
  c.check_cmd->add_option("algorithm", c.check.algorithm, "Algorithm name")->required();
  c.check_cmd->add_option("--option", c.check.options, "Algorithm option key=value (repeatable)");
  c.check_cmd->add_option("--site", c.check.site_config,
                          "Per-site config key=value, as a config_list entry gives it, e.g. "
                          "quant_bits=4 (repeatable)");
  c.check_cmd->add_option("--sparsity", c.check.sparsity, "Sparsity for a masker")
      ->capture_default_str();
}

void add_model_commands(Cli& c) {
  c.inspect_cmd = c.app.add_subcommand(
      "inspect", "List a TorchScript model's ops and the sites a config_list creates");
  c.inspect_cmd->add_option("model", c.inspect_model, "TorchScript model file")->required();
  c.inspect_cmd->add_option("--config-list", c.inspect_config,
                            "YAML file: a config_list, or an experiment with compress stages");
  c.inspect_cmd->add_flag("--json", c.inspect_json, "Print JSON instead of a table");

  c.export_cmd = c.app.add_subcommand(
      "export",
      "Turn a fake-quant model (model_qat.pt) into one that runs int8 kernels, or fold a float "
      "model's BatchNorms for inference");
  c.export_cmd->add_option("model", c.export_model, "TorchScript model (model_qat.pt for --int8)")
      ->required()
      ->check(CLI::ExistingFile);
  c.export_cmd->add_flag("--int8", c.export_int8, "LibTorch's int8 kernels (oneDNN engine)");
  c.export_cmd->add_flag("--fold-bn", c.export_fold_bn,
                         "Frozen for inference, each BatchNorm after a convolution folded into it");
  c.export_cmd->add_option("-o,--out", c.export_out,
                           "Output file (default: beside the model, *_int8.pt or *_folded.pt)");
}

void add_run_command(Cli& c) {
  c.run_cmd =
      c.app.add_subcommand("run", "Run a YAML experiment: train, compress, evaluate, export");
  RunArgs& a = c.run;
  c.run_cmd->add_option("experiment", a.experiment, "YAML experiment file")->required();
  c.run_cmd->add_option("--out", a.out,
                        "Output folder, relative to the current folder (default: the "
                        "experiment's export.dir)");
  c.run_cmd->add_option("--set", a.overrides,
                        "Override one key: --set finetune.epochs=1 (value as YAML; a path in it is "
                        "relative to the current folder, as --out; repeatable)");
  c.run_cmd->add_flag("--print-plan", a.print_plan,
                      "Check everything and print the resolved pipeline without running it");
  auto* resume = c.run_cmd->add_flag(
      "--resume", a.resume, "Continue an interrupted run from the checkpoint in its output folder");
  c.run_cmd
      ->add_flag("--fresh", a.fresh,
                 "Discard the checkpoint an interrupted run left in the output folder")
      ->excludes(resume);
  c.run_cmd->add_flag("--check-plugins", a.check_plugins,
                      "Check every plugin result for NaN and inf too (a host sync per call)");
  c.run_cmd
      ->add_option("--stop-after-epochs", a.stop_after_epochs,
                   "Stop after this many training epochs in all (resume later with --resume)")
      ->check(CLI::PositiveNumber);
  c.run_cmd
      ->add_option("--nproc", a.nproc,
                   "Train data-parallel on this many local processes (ranks); torchrun, Slurm "
                   "and mpirun start ranks without it (docs/distributed.md)")
      ->check(CLI::Range(1, 1024));
}

void add_bench_command(Cli& c) {
  c.bench_cmd = c.app.add_subcommand(
      "bench", "Median latency of a model, and of its int8 export (or another model) beside it");
  BenchArgs& a = c.bench;
  c.bench_cmd->add_option("model", a.model, "fp32 TorchScript model")
      ->required()
      ->check(CLI::ExistingFile);
  auto* int8_opt = c.bench_cmd->add_option("--int8", a.int8, "Its int8 export (model_int8.pt)")
                       ->check(CLI::ExistingFile);
  c.bench_cmd
      ->add_option(
          "--vs", a.other,
          "Another float model taking the same input (model_pruned.pt, say), column 'other'")
      ->check(CLI::ExistingFile)
      ->excludes(int8_opt);
  c.bench_cmd->add_option("--shape", a.shape, "One sample's shape, e.g. 1,28,28")
      ->delimiter(',')
      ->required();
  c.bench_cmd->add_option("--batch", a.batches, "Batch sizes")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  c.bench_cmd->add_option("--threads", a.threads, "Intra-op threads")
      ->check(CLI::Range(1, shrink::kMaxThreads))
      ->capture_default_str();
  c.bench_cmd
      ->add_option(
          "--runs", a.runs,
          "Timed rounds per batch size, each model 4 calls a round (default: about 1 s a model)")
      ->check(CLI::Range(1, 1000000));
  c.bench_cmd->add_flag("--json", a.json, "Also print the figures as one JSON line");
}

int dispatch(Cli& c) {
  if (!c.global.log_level.empty()) shrink::logging::set_level(c.global.log_level);
  if (*c.help_cmd) {
    std::cout << c.app.get_formatter()->make_help(&c.app, c.app.get_name(),
                                                  CLI::AppFormatMode::Normal);
    return 0;
  }
  if (*c.plugins_cmd) return run_plugins(c.global, c.plugins_json, c.plugin_names);
  if (*c.check_cmd) return shrink_cli::run_check(c.global.plugin_paths, c.check);
  if (*c.inspect_cmd) return run_inspect(c.inspect_model, c.inspect_config, c.inspect_json);
  if (*c.run_cmd) return run_run(c.global, c.run);
  if (*c.bench_cmd) return run_bench(c.bench);
  if (*c.export_cmd)
    return run_export(c.export_model, c.export_int8, c.export_fold_bn, c.export_out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // glibc hands large freed blocks back to the kernel (an mmap'd block at once, the heap's top
  // past 128 KiB), so every tensor-sized allocation faults its pages in again, op after op: small
  // convolutional nets' fp32 forwards ran many times slower and latency swung between processes
  // (figures in docs/results.md, "Latency is steady"). Shrink keeps freed memory for reuse,
  // as jemalloc or tcmalloc do: blocks up to 32 MiB (glibc's largest threshold) come from the
  // heap, which is never trimmed.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  Cli c;
  add_global_options(c);
  add_plugin_commands(c);
  add_model_commands(c);
  add_run_command(c);
  add_bench_command(c);
  c.help_cmd = c.app.add_subcommand("help", "Show this help");
  try {
    c.app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return c.app.exit(e);
  }
  c.run.argv = shrink_cli::without_nproc(argc, argv);
  try {
    return dispatch(c);
  } catch (const std::exception& e) {
    // One line: a plugin's own line when a TorchScript forward wrapped it in its traceback.
    std::fprintf(stderr, "shrink: error: %s\n", shrink::error_line(e).c_str());
    return 1;
  }
}
