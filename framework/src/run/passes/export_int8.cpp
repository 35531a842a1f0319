#include <shrink/core/error.hpp>
#include <shrink/export/int8_export.hpp>
#include <shrink/graph/measure.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>

#include "run/training.hpp"

#include <torch/script.h>

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <optional>
#include <sstream>

namespace shrink {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

int64_t file_bytes(const fs::path& p) { return static_cast<int64_t>(fs::file_size(p)); }

void say_result(RunContext& c, const Int8Export& lowered, double accuracy, double sqnr) {
  std::ostringstream line;
  line << "model_int8.pt: " << lowered.quantized_ops << " int8 ops";
  if (c.experiment->evaluate) line << ", accuracy " << std::setprecision(4) << accuracy;
  line << ", output SQNR vs model_qat.pt " << std::setprecision(3) << sqnr << " dB, "
       << std::setprecision(2) << c.int8["size_ratio"].get<double>() << "x the fp32 file";
  c.say(line.str());
  for (const auto& f : lowered.float_ops) c.say("  float: " + f);
  for (const auto& n : lowered.notes) c.say("  note: " + n);
}

// What the timing chose, per region: a line each for those left float, and the report's table.
json regions_json(RunContext& c, const Int8Export& lowered) {
  json regions = json::array();
  for (const Int8Region& r : lowered.regions) {
    regions.push_back(
        {{"ops", r.ops}, {"int8", r.int8}, {"gain", r.gain > 0 ? json(r.gain) : json(nullptr)}});
    if (r.int8) continue;
    std::ostringstream line;
    line << "int8 region of " << r.ops.size() << " ops (" << r.ops.front() << " ... "
         << r.ops.back() << ") left float: its int8 version took " << std::setprecision(2)
         << 1 / r.gain << "x the float version's time here (at the batch size where it did worst)";
    c.say(line.str());
  }
  return regions;
}

// Time regions and the whole model where the experiment asks (export.int8_only_if_faster), on
// one sample's shape at batch 1 and the training batch.
std::optional<Int8Timing> timing_of(const RunContext& c) {
  const Experiment& x = *c.experiment;
  if (!x.export_int8_only_if_faster) return std::nullopt;
  Int8Timing t{x.model, c.train.shape(), {1}};
  if (x.batch_size > 1) t.batches.push_back(x.batch_size);
  return t;
}

}  // namespace

void ExportInt8Pass::run(RunContext& c) {
  SHRINK_CHECK(c.exported != nullptr,
               "export.int8: there is no model_qat.pt to lower "
               "(the experiment has no quantization stage)");
  const fs::path int8_file = fs::path(c.staging) / "model_int8.pt";
  const std::optional<Int8Timing> timing = timing_of(c);
  const Int8Export lowered =
      export_int8(c.exported->path(), int8_file.string(), timing ? &*timing : nullptr);
  const json regions = regions_json(c, lowered);
  if (!lowered.written) {
    std::ostringstream line;
    line << "model_int8.pt not written: int8 ran at " << std::setprecision(2) << lowered.speedup
         << "x the best fp32's speed here (the slower of batch 1"
         << (timing->batches.size() > 1 ? " and " + std::to_string(timing->batches[1]) : "")
         << ", 1 thread, oneDNN " << onednn_isa()
         << "); model_qat.pt holds the quantized model "
            "(export.int8_only_if_faster: false writes it anyway)";
    // AMX's per-call set-up loses on small convolutions (docs/experiments.md, Did it pay?).
    if (onednn_isa() == "AVX512_CORE_AMX") {
      line << "; AMX costs small convolutions more than it saves: with "
              "ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI set for shrink and where the model runs, int8 "
              "may pay";
    }
    c.say(line.str());
    c.int8 = {
        {"file", nullptr},     {"written", false},   {"speedup", lowered.speedup},
        {"isa", onednn_isa()}, {"regions", regions}, {"quantized_ops", lowered.quantized_ops}};
    return;
  }
  use_int8_engine();
  torch::jit::Module int8_model = load_torchscript(int8_file.string());
  double sqnr = 0;  // output SQNR against model_qat.pt
  const double accuracy = evaluate(c, int8_model, c.test, &c.exported->module(), &sqnr);
  c.summary.int8_accuracy = accuracy;
  const std::string& fp32 = c.experiment->model;
  c.int8 = {{"file", "model_int8.pt"},
            {"engine", "onednn"},
            {"accuracy", c.experiment->evaluate ? json(accuracy) : json(nullptr)},
            {"sqnr_db_vs_fake_quant", std::isfinite(sqnr) ? json(sqnr) : json(nullptr)},
            {"written", true},
            {"speedup", lowered.speedup > 0 ? json(lowered.speedup) : json(nullptr)},
            {"isa", onednn_isa()},
            {"regions", regions},
            {"quantized_ops", lowered.quantized_ops},
            {"int8_ops", lowered.int8_ops},
            {"float_ops", lowered.float_ops},
            {"notes", lowered.notes},
            {"file_bytes", file_bytes(int8_file)},
            {"fp32_file_bytes", file_bytes(fp32)},
            {"size_ratio",
             static_cast<double>(file_bytes(int8_file)) / static_cast<double>(file_bytes(fp32))}};
  say_result(c, lowered, accuracy, sqnr);
}

}  // namespace shrink
