// Did it pay? The results' latency against the fp32 model a user could run without Shrink.
#include <shrink/core/error.hpp>
#include <shrink/export/int8_export.hpp>
#include <shrink/graph/measure.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <chrono>
#include <filesystem>
#include <iomanip>
#include <optional>
#include <sstream>

namespace shrink {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A float model both as loaded and frozen + optimize_for_inference (when it freezes); what runs
// faster is what the compressed models are held against.
struct FloatPair {
  torch::jit::Module loaded;
  std::optional<torch::jit::Module> frozen;
};

FloatPair float_pair(const std::string& file, RunContext& c) {
  FloatPair p{load_torchscript(file), std::nullopt};
  p.loaded.eval();
  try {
    p.frozen = frozen_for_inference(p.loaded);
  } catch (const Error& e) {
    c.say("warning: latency: " + fs::path(file).filename().string() + " " + e.what() +
          "; it is timed as loaded only");
  }
  return p;
}

void add(std::vector<NamedModel>& models, const std::string& name, FloatPair& p) {
  models.push_back({name, &p.loaded});
  if (p.frozen) models.push_back({name + "_frozen", &*p.frozen});
}

// The milliseconds in `ms` (a row's warm or cold medians) of the fastest form of `name` (as
// loaded, or frozen), and which form it was; -1 when `name` was not timed.
std::pair<double, std::string> best_of(const std::vector<NamedModel>& models,
                                       const std::vector<double>& ms, const std::string& name) {
  const int k = fastest(models, ms, name);
  if (k < 0) return {-1, ""};
  const auto i = static_cast<std::size_t>(k);
  return {ms[i], models[i].name == name ? "as loaded" : "frozen + optimize_for_inference"};
}

// "int8 0.210 ms: 1.96x faster than the best fp32", "... 0.94x, SLOWER than the best fp32";
// within 3 % either way, "about as fast as" (the medians' own spread).
std::string verdict(const std::string& what, double ms, double fp32_ms) {
  std::ostringstream s;
  const double speedup = fp32_ms / ms;
  s << what << " " << std::fixed << std::setprecision(3) << ms << " ms: " << std::setprecision(2)
    << speedup << "x, "
    << (speedup > 1.03   ? "faster than"
        : speedup < 0.97 ? "SLOWER than"
                         : "about as fast as")
    << " the best fp32";
  return s.str();
}

json row_json(const std::vector<NamedModel>& models, const LatencyRow& r, bool masked_only,
              std::vector<std::string>& lines) {
  json row = {{"batch", r.batch}, {"runs", r.runs}, {"calls_per_run", kCallsPerTurn}};
  for (std::size_t k = 0; k < models.size(); ++k) {
    row[models[k].name + "_ms"] = r.ms[k];
    row[models[k].name + "_cold_ms"] = r.cold_ms[k];
  }
  const auto fp32 = best_of(models, r.ms, "fp32");
  const double fp32_cold = best_of(models, r.cold_ms, "fp32").first;
  row["best_fp32_ms"] = fp32.first;
  row["best_fp32"] = fp32.second;
  row["best_fp32_cold_ms"] = fp32_cold;
  std::ostringstream line;
  line << "latency, batch " << r.batch << ", 1 thread: best fp32 " << std::fixed
       << std::setprecision(3) << fp32.first << " ms (" << fp32.second << ")";
  for (const std::string what : {"int8", "pruned"}) {
    const auto best = best_of(models, r.ms, what);
    if (best.first < 0) continue;
    const double cold = fp32_cold / best_of(models, r.cold_ms, what).first;
    row[what + "_best_ms"] = best.first;
    row[what + "_speedup"] = fp32.first / best.first;
    row[what + "_cold_speedup"] = cold;
    line << "; " << verdict(what, best.first, fp32.first) << " (" << std::setprecision(2) << cold
         << "x cold"
         << (what == "pruned" && masked_only
                 ? "; its pruned channels are zeros, remove_channels: true removes them"
                 : "")
         << ")";
  }
  lines.push_back(line.str());
  return row;
}

// oneDNN's AMX int8 convolutions pay a set-up on every call (a tile configuration, and a CPUID
// that a hypervisor may trap) that their speed repays on large convolutions only: small models
// and batches can run faster with AMX left out. oneDNN takes its instruction set once per
// process, so the int8 model is timed again in a child capped below AMX, at each batch size, and
// each line says both. Figures from another process compare as speed-ups over the best fp32,
// each timed in its own process.
constexpr const char* kWithoutAmx = "AVX512_CORE_VNNI";

// The child's figures at one batch size, for report.json; throws shrink::Error.
json without_amx(const json& bench) {
  try {
    const json& r = bench.at("results").at(0);
    SHRINK_CHECK(bench.at("isa") == kWithoutAmx,
                 "its oneDNN ran " << bench.at("isa") << ", not " << kWithoutAmx);
    return {{"isa", bench.at("isa")},
            {"int8_ms", r.at("int8_ms").get<double>()},
            {"best_fp32_ms", r.at("best_fp32_ms").get<double>()},
            {"int8_speedup", r.at("speedup").get<double>()},
            {"int8_cold_speedup", r.at("cold_speedup").get<double>()}};
  } catch (const json::exception& e) {
    throw Error(std::string("its figures could not be read: ") + e.what());
  }
}

// `seconds`: what this process's timing took; the child gets many times that.
void compare_without_amx(RunContext& c, const std::vector<LatencyRow>& rows, double seconds,
                         json& table, std::vector<std::string>& lines) {
  const auto& bench = c.options->bench_with_isa;
  if (!bench || onednn_isa() != "AVX512_CORE_AMX") return;
  const IsaBench base{kWithoutAmx,
                      c.experiment->model,
                      (fs::path(c.staging) / "model_int8.pt").string(),
                      c.train.shape(),
                      1,
                      0,
                      60 + 20 * seconds};
  for (std::size_t k = 0; k < rows.size(); ++k) {
    IsaBench request = base;
    request.batch = rows[k].batch;
    request.rounds = rows[k].runs;
    try {
      table[k]["without_amx"] = without_amx(bench(request));
    } catch (const Error& e) {
      c.say(std::string("warning: latency: timing int8 without AMX failed: ") + e.what());
      return;
    }
    const json& r = table[k]["without_amx"];
    std::ostringstream line;
    line << "; int8 without AMX (ONEDNN_MAX_CPU_ISA=" << kWithoutAmx << ") " << std::fixed
         << std::setprecision(2) << r["int8_speedup"].get<double>() << "x ("
         << r["int8_cold_speedup"].get<double>() << "x cold)";
    lines[k] += line.str();
  }
}

}  // namespace

void MeasureLatencyPass::run(RunContext& c) {
  const Experiment& x = *c.experiment;
  const fs::path int8_file = fs::path(c.staging) / "model_int8.pt";
  const fs::path pruned_file = fs::path(c.staging) / "model_pruned.pt";
  ThreadCount one(1);
  torch::NoGradGuard no_grad;
  FloatPair fp32 = float_pair(x.model, c);
  std::vector<NamedModel> models;
  add(models, "fp32", fp32);
  std::optional<FloatPair> pruned;
  if (fs::exists(pruned_file)) {
    pruned = float_pair(pruned_file.string(), c);
    add(models, "pruned", *pruned);
  }
  torch::jit::Module int8;
  if (fs::exists(int8_file)) {
    use_int8_engine();
    int8 = load_torchscript(int8_file.string());
    int8.eval();
    models.push_back({"int8", &int8, true});
  }
  std::vector<int64_t> batches = {1};
  if (x.batch_size > 1) batches.push_back(x.batch_size);
  const std::vector<int64_t> shape = c.train.shape();  // as prepared
  std::vector<LatencyRow> rows;
  const auto start = std::chrono::steady_clock::now();
  try {
    rows = latency_table(models, shape, batches, 0, 300.0, 2);
  } catch (const Error& e) {
    // Timing is a report on results already written: a model that cannot be timed (a frozen
    // form that refuses a batch size, say) costs the table, not the run.
    c.say(std::string("warning: latency: ") + e.what() + "; report.json has no latency table");
    return;
  }
  json table = json::array();
  std::vector<std::string> lines;
  const bool masked_only = c.channel_removal.is_null();
  for (const LatencyRow& r : rows) table.push_back(row_json(models, r, masked_only, lines));
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  if (fs::exists(int8_file)) compare_without_amx(c, rows, took.count(), table, lines);
  c.latency = {{"threads", 1}, {"isa", onednn_isa()}, {"rows", table}};
  c.summary.latency = lines;  // the run's summary says them
}

}  // namespace shrink
