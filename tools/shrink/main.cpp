// The `shrink` command line.
#include <shrink/config/config_list.hpp>
#include <shrink/core/error.hpp>
#include <shrink/config/experiment.hpp>
#include <shrink/export/int8_export.hpp>
#include <shrink/core/logging.hpp>
#include <shrink/host/masker_instance.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/run/pipeline.hpp>
#include <shrink/host/plugin_registry.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/core/version.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

namespace {

struct GlobalOptions {
  std::vector<std::string> plugin_paths;
  std::string log_level = "info";
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
    out["abi"] = std::to_string(SHRINK_ABI_VERSION_MAJOR) + "." +
                 std::to_string(SHRINK_ABI_VERSION_MINOR);
    out["algorithms"] = nlohmann::json::array();
    for (const auto* alg : selected) {
      out["algorithms"].push_back({{"name", alg->name},
                                   {"description", alg->description},
                                   {"kind", alg->kinds_text()},
                                   {"capabilities", alg->capabilities_text()},
                                   {"op_types", alg->supported_op_types},
                                   {"plugin", alg->plugin->name},
                                   {"version", alg->plugin->version},
                                   {"abi", abi_text(*alg->plugin)},
                                   {"build", alg->plugin->build_tag},
                                   {"file", alg->plugin->file}});
    }
    out["failures"] = nlohmann::json::array();
    for (const auto& f : registry->failures()) {
      out["failures"].push_back({{"file", f.file},
                                 {"origin", shrink::to_string(f.origin)},
                                 {"requested", f.requested},
                                 {"message", f.message}});
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

// `shrink check ALGO`: a smoke test for plugin authors. Runs the algorithm once on a random
// Conv2d-shaped weight: forward and backward for a quantizer, calc_mask for a masker.
int run_check(const GlobalOptions& global, const std::string& name,
              const std::vector<std::string>& option_args, double sparsity) {
  auto registry = discover(global);
  const shrink::AlgorithmInfo& alg = registry->require(name);
  shrink::Options options;
  for (const auto& kv : option_args) {
    auto eq = kv.find('=');
    SHRINK_CHECK(eq != std::string::npos, "--option '" << kv << "' is not key=value");
    options.set(kv.substr(0, eq), kv.substr(eq + 1));
  }
  torch::manual_seed(0);
  torch::Tensor weight = torch::randn({8, 4, 3, 3});
  if (alg.is_quantizer()) {
    shrink::QuantizerInstance q(alg, options);
    shrink::SiteSpec spec;
    spec.module_name = "check.conv";
    spec.module_type = "Conv2d";
    spec.target = "weight";
    spec.quant_type = shrink::QuantType::kWeight;
    spec.sample = weight;
    int site = q.add_site(spec);
    torch::Tensor w = weight.clone().requires_grad_(true);
    torch::Tensor y = q.quantize(site, w);
    y.sum().backward();
    q.step();
    q.update_epoch(0);
    double err = (y.detach() - weight).abs().max().item<double>();
    std::cout << name << ": quantize_weight ok, shape " << y.sizes() << ", max |w_hat - w| = "
              << err << ", " << (q.has_quant_grad() ? "QuantGrad" : "straight-through")
              << " backward ok, grad sum " << w.grad().sum().item<double>() << "\n";
    return 0;
  }
  shrink::MaskerInstance m(alg, options);
  shrink::WrapperSpec wrapper{"check.conv", "Conv2d", {}, weight, torch::randn({8})};
  shrink::Masks masks = m.calc_mask(sparsity, wrapper, 0);
  double kept = masks.weight_mask.to(torch::kDouble).mean().item<double>();
  std::cout << name << ": calc_mask ok at sparsity " << sparsity << ", weight_mask keeps "
            << kept << " of the weights\n";
  return 0;
}

// `shrink inspect model.pt [--config-list FILE]`: the model's op instances, and the sites the
// config_list(s) in FILE would create on each.
int run_inspect(const std::string& model_path, const std::string& config_path, bool json) {
  shrink::Model model = shrink::Model::load(model_path);
  std::map<std::string, std::vector<std::string>> sites;  // op -> "stage N: target (dtype)"
  if (!config_path.empty()) {
    auto lists = shrink::ConfigList::load_file(config_path);
    for (std::size_t stage = 0; stage < lists.size(); ++stage) {
      for (const auto& site : shrink::plan_sites(lists[stage], model.ops())) {
        std::string text = site.target + "(" + *site.config.find("quant_dtype") + "," +
                           *site.config.find("quant_scheme") + ")";
        if (lists.size() > 1) text = "stage" + std::to_string(stage) + ":" + text;
        sites[site.op_name].push_back(text);
      }
    }
  }
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& op : model.ops()) {
      out.push_back({{"name", op.name},
                     {"type", op.type},
                     {"kind", op.functional ? "functional" : "module"},
                     {"sites", sites[op.name]}});
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
    rows.push_back({op.name, op.type, op.functional ? "functional" : "module", text.empty() ? "-" : text});
  }
  print_table(rows);
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
  int64_t stop_after_epochs = 0;
};

// `shrink run exp.yaml`: the whole experiment; results in the output folder.
int run_run(const GlobalOptions& global, const RunArgs& args) {
  const shrink::Experiment experiment = shrink::Experiment::load(args.experiment, args.overrides);
  shrink::PluginRegistry registry;
  registry.discover(shrink::plugin_search_paths(experiment.plugin_paths, global.plugin_paths));
  shrink::RunOptions options;
  options.out_dir = args.out;
  options.print_plan = args.print_plan;
  options.resume = args.resume;
  options.stop_after_epochs = args.stop_after_epochs;
  const shrink::RunSummary summary = shrink::run_experiment(experiment, registry, options);
  if (args.print_plan || summary.stopped) return 0;
  std::cout << std::fixed << std::setprecision(4);
  std::cout << "results in " << summary.out_dir << "\n";
  if (summary.baseline_accuracy >= 0) {
    std::cout << "  accuracy   fp32 " << summary.baseline_accuracy;
    if (summary.compressed_accuracy >= 0) std::cout << ", compressed " << summary.compressed_accuracy;
    if (summary.exported_accuracy >= 0) {
      std::cout << ", " << summary.exported_file << " " << summary.exported_accuracy;
    }
    if (summary.int8_accuracy >= 0) std::cout << ", model_int8.pt " << summary.int8_accuracy;
    std::cout << "\n";
  }
  if (summary.baseline_seconds_per_epoch > 0 && summary.compressed_seconds_per_epoch > 0) {
    std::cout << std::setprecision(2) << "  epoch time fp32 " << summary.baseline_seconds_per_epoch
              << " s, compressed " << summary.compressed_seconds_per_epoch << " s ("
              << summary.compressed_seconds_per_epoch / summary.baseline_seconds_per_epoch
              << "x)\n";
  }
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
    out = (stem.size() > 4 && stem.substr(stem.size() - 4) == "_qat" ? stem.substr(0, stem.size() - 4)
                                                                      : stem) +
          (int8 ? "_int8.pt" : "_folded.pt");
  }
  if (fold_bn) {
    const int folded = shrink::fold_batchnorm(model, out);
    std::cout << "fold-bn: " << folded << " BatchNorm" << (folded == 1 ? "" : "s") << " folded -> " << out << "\n";
    return 0;
  }
  const shrink::Int8Export result = shrink::export_int8(model, out);
  std::cout << "int8: " << result.quantized_ops << " quantized ops -> " << out << "\n";
  for (const auto& line : result.float_ops) std::cout << "  float: " << line << "\n";
  for (const auto& line : result.notes) std::cout << "  note: " << line << "\n";
  return 0;
}

// `shrink bench model.pt [--int8 model_int8.pt | --vs other.pt] --shape 1,28,28 [--batch 1,64] [--threads 1]`:
// median latency of each model, measured side by side (the models take turns, run by run, so
// that a noisy neighbour slows both alike).
struct BenchArgs {
  std::string model;
  std::string int8;
  std::string other;  // --vs
  std::vector<int64_t> shape;
  std::vector<int64_t> batches = {1, 64};
  int threads = 1;
  int runs = 0;  // 0: enough for about a second per model and batch size
  bool json = false;
};

int run_bench(const BenchArgs& args) {
  SHRINK_CHECK(!args.shape.empty(), "bench: --shape is required (one sample's shape, e.g. 1,28,28)");
  at::set_num_threads(args.threads);
  // Denormal floats (tiny weights and activations after training) run 10x slower on x86 and
  // made timings swing with the weights' values; runs flush them, as training does.
  at::globalContext().setFlushDenormal(true);
  torch::NoGradGuard no_grad;
  std::vector<std::pair<std::string, torch::jit::Module>> models;
  auto load = [](const std::string& file) {
    try {
      torch::jit::Module m = torch::jit::load(file);
      m.eval();
      return m;
    } catch (const c10::Error& e) {
      throw shrink::Error(file + ": cannot be loaded as TorchScript: " +
                          std::string(e.what_without_backtrace()).substr(0, 200));
    }
  };
  models.emplace_back("fp32", load(args.model));
  if (!args.int8.empty()) {
    shrink::use_int8_engine();
    models.emplace_back("int8", load(args.int8));
  }
  if (!args.other.empty()) models.emplace_back("other", load(args.other));
  using Clock = std::chrono::steady_clock;
  nlohmann::json rows = nlohmann::json::array();
  std::cout << "threads " << args.threads << "\n";
  std::cout << std::left << std::setw(8) << "batch";
  for (const auto& m : models) std::cout << std::setw(14) << (m.first + " ms");
  if (models.size() == 2) std::cout << "speed-up";
  std::cout << "\n";
  for (int64_t batch : args.batches) {
    std::vector<int64_t> sizes = {batch};
    sizes.insert(sizes.end(), args.shape.begin(), args.shape.end());
    const at::Tensor x = torch::randn(sizes);
    std::vector<std::vector<double>> times(models.size());
    auto once = [&](torch::jit::Module& m) {
      const auto start = Clock::now();
      m.forward({x});
      return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    };
    double slowest = 0;  // per run of a warmed-up model
    for (auto& m : models) {
      for (int i = 0; i < 3; ++i) once(m.second);  // warm-up: the profiling executor settles
      slowest = std::max(slowest, once(m.second));
    }
    const int runs = args.runs > 0 ? args.runs
                                   : static_cast<int>(std::min(2000.0, std::max(20.0, 1000.0 / std::max(slowest, 0.01))));
    for (int r = 0; r < runs; ++r) {
      for (std::size_t k = 0; k < models.size(); ++k) times[k].push_back(once(models[k].second));
    }
    nlohmann::json row = {{"batch", batch}, {"runs", runs}};
    std::cout << std::left << std::setw(8) << batch << std::fixed << std::setprecision(3);
    std::vector<double> medians;
    for (std::size_t k = 0; k < models.size(); ++k) {
      auto& t = times[k];
      std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
      medians.push_back(t[t.size() / 2]);
      row[models[k].first + "_ms"] = medians.back();
      std::cout << std::setw(14) << medians.back();
    }
    if (medians.size() == 2) {
      row["speedup"] = medians[0] / medians[1];
      std::cout << std::setprecision(2) << medians[0] / medians[1] << "x";
    }
    std::cout << std::defaultfloat << "\n";
    rows.push_back(row);
  }
  if (args.json) std::cout << nlohmann::json{{"threads", args.threads}, {"results", rows}}.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // glibc hands large freed blocks back to the kernel (an mmap'd block at once, the heap's top
  // past 128 KiB), so every tensor-sized allocation faults its pages in again, op after op. On
  // this machine that made a small ResNet's fp32 forward 15x slower (30 ms against 1.9 ms at
  // batch 64) and latency figures swing between processes. Shrink keeps freed memory for reuse,
  // as jemalloc or tcmalloc do: blocks up to 32 MiB (glibc's largest threshold) come from the
  // heap, which is never trimmed.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  CLI::App app{"Shrink: compress TorchScript models by quantization and pruning"};
  app.set_version_flag("--version", std::string("shrink ") + shrink::version() + " (plugin ABI " +
                                        std::to_string(SHRINK_ABI_VERSION_MAJOR) + "." +
                                        std::to_string(SHRINK_ABI_VERSION_MINOR) + ", LibTorch " +
                                        shrink::torch_version() + ")");
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand: `shrink plugins --plugin-path X`
  GlobalOptions global;
  app.add_option("--plugin-path", global.plugin_paths,
                 "Plugin file or folder to search before SHRINK_PLUGIN_PATH (repeatable)");
  app.add_option("--log-level", global.log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str();

  auto* plugins = app.add_subcommand("plugins", "List the algorithm plugins Shrink can load");
  bool json = false;
  std::vector<std::string> names;
  plugins->add_flag("--json", json, "Print JSON instead of a table");
  plugins->add_option("names", names, "Only these algorithms (fails if one is missing)");

  auto* check = app.add_subcommand("check", "Smoke-test one algorithm on a random weight");
  std::string check_name;
  std::vector<std::string> check_options;
  double sparsity = 0.5;
  check->add_option("algorithm", check_name, "Algorithm name")->required();
  check->add_option("--option", check_options, "Algorithm option key=value (repeatable)");
  check->add_option("--sparsity", sparsity, "Sparsity for a masker")->capture_default_str();

  auto* inspect = app.add_subcommand("inspect", "List a TorchScript model's ops and the sites a config_list creates");
  std::string inspect_model;
  std::string inspect_config;
  bool inspect_json = false;
  inspect->add_option("model", inspect_model, "TorchScript model file")->required();
  inspect->add_option("--config-list", inspect_config,
                      "YAML file: a config_list, or an experiment with compress stages");
  inspect->add_flag("--json", inspect_json, "Print JSON instead of a table");

  auto* run = app.add_subcommand("run", "Run a YAML experiment: train, compress, evaluate, export");
  RunArgs run_args;
  run->add_option("experiment", run_args.experiment, "YAML experiment file")->required();
  run->add_option("--out", run_args.out, "Output folder (default: the experiment's export.dir)");
  run->add_option("--set", run_args.overrides,
                  "Override one key: --set finetune.epochs=1 (value as YAML; repeatable)");
  run->add_flag("--print-plan", run_args.print_plan,
                "Check everything and print the resolved pipeline without running it");
  run->add_flag("--resume", run_args.resume,
                "Continue an interrupted run from the checkpoint in its output folder");
  run->add_option("--stop-after-epochs", run_args.stop_after_epochs,
                  "Stop after this many training epochs in all (resume later with --resume)")
      ->check(CLI::PositiveNumber);

  auto* export_cmd = app.add_subcommand(
      "export",
      "Turn a fake-quant model (model_qat.pt) into one that runs int8 kernels, or fold a float "
      "model's BatchNorms for inference");
  std::string export_model, export_out;
  bool export_int8 = false, export_fold_bn = false;
  export_cmd->add_option("model", export_model, "TorchScript model (model_qat.pt for --int8)")
      ->required()
      ->check(CLI::ExistingFile);
  export_cmd->add_flag("--int8", export_int8, "LibTorch's int8 kernels (oneDNN engine)");
  export_cmd->add_flag("--fold-bn", export_fold_bn,
                       "Frozen for inference, each BatchNorm after a convolution folded into it");
  export_cmd->add_option("-o,--out", export_out,
                         "Output file (default: beside the model, *_int8.pt or *_folded.pt)");

  auto* bench = app.add_subcommand(
      "bench", "Median latency of a model, and of its int8 export (or another model) beside it");
  BenchArgs bench_args;
  bench->add_option("model", bench_args.model, "fp32 TorchScript model")->required()->check(CLI::ExistingFile);
  auto* int8_opt = bench->add_option("--int8", bench_args.int8, "Its int8 export (model_int8.pt)")->check(CLI::ExistingFile);
  bench->add_option("--vs", bench_args.other,
                    "Another float model taking the same input (model_pruned.pt, say), column 'other'")
      ->check(CLI::ExistingFile)
      ->excludes(int8_opt);
  bench->add_option("--shape", bench_args.shape, "One sample's shape, e.g. 1,28,28")
      ->delimiter(',')
      ->required();
  bench->add_option("--batch", bench_args.batches, "Batch sizes")->delimiter(',')->capture_default_str();
  bench->add_option("--threads", bench_args.threads, "Intra-op threads")->capture_default_str();
  bench->add_option("--runs", bench_args.runs, "Timed runs per model and batch size (default: about 1 s)");
  bench->add_flag("--json", bench_args.json, "Also print the figures as one JSON line");

  auto* help = app.add_subcommand("help", "Show this help");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    shrink::logging::set_level(global.log_level);
    if (*help) {
      std::cout << app.get_formatter()->make_help(&app, app.get_name(), CLI::AppFormatMode::Normal);
      return 0;
    }
    if (*plugins) return run_plugins(global, json, names);
    if (*check) return run_check(global, check_name, check_options, sparsity);
    if (*inspect) return run_inspect(inspect_model, inspect_config, inspect_json);
    if (*run) return run_run(global, run_args);
    if (*bench) return run_bench(bench_args);
    if (*export_cmd) return run_export(export_model, export_int8, export_fold_bn, export_out);
  } catch (const shrink::Error& e) {
    std::fprintf(stderr, "shrink: error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "shrink: error: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shrink: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
