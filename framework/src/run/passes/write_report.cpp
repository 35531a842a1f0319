#include <shrink/core/version.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>

#include "run/report_json.hpp"

#include <yaml-cpp/yaml.h>

#include <filesystem>

namespace shrink {
namespace {

using json = nlohmann::json;

json accuracy_or_null(double a) { return a >= 0 ? json(a) : json(nullptr); }

// Where the samples came from: the class names of a folder (index = label), the samples used,
// those skipped as unreadable (data.on_bad_sample: skip) and the loader's workers.
json data_json(const RunContext& c) {
  const auto split = [](const DataSplit& d) {
    const std::vector<std::string> classes = d.source().classes();
    const std::optional<uint64_t> subset = d.subset_seed();
    return json{{"samples", d.size()},
                {"of", d.source().size()},
                {"subset_seed", subset ? json(*subset) : json(nullptr)},
                {"skipped", d.skipped()},
                {"classes", classes.empty() ? json(nullptr) : json(classes)}};
  };
  return {{"format", c.experiment->data.format},
          {"shape", c.train.shape()},
          {"workers", c.train.workers()},
          {"train", split(c.train)},
          {"test", split(c.test)}};
}

json train_json(RunContext& c) {
  const double baseline = c.pretrain.seconds_per_epoch(c.train.size());
  const double compressed = c.finetune.seconds_per_epoch(c.train.size());
  c.summary.baseline_seconds_per_epoch = baseline;
  c.summary.compressed_seconds_per_epoch = compressed;
  return {
      // null, not 0, for a phase that did not train.
      {"baseline_seconds_per_epoch", baseline > 0 ? json(baseline) : json(nullptr)},
      {"compressed_seconds_per_epoch", compressed > 0 ? json(compressed) : json(nullptr)},
      {"overhead", baseline > 0 && compressed > 0 ? json(compressed / baseline) : json(nullptr)},
      {"pretrain", c.pretrain.to_json()},
      {"finetune", c.finetune.to_json()},
      {"history", c.history}};
}

// Every stage's folded pairs in one list ("conv1 + batchnorm1"): [] when none folds.
json folded_pairs(const RunContext& c) {
  json pairs = json::array();
  for (const auto& stage : c.folded_batchnorms) {
    for (const std::string& pair : stage) pairs.push_back(pair);
  }
  return pairs;
}

}  // namespace

void WriteReportPass::run(RunContext& c) {
  // Stages resumed past have their tables from the restored masks.
  for (std::size_t k = 0; k < c.pruning.size(); ++k) {
    if (c.pruning[k]["ops"].is_null()) c.pruning[k].update(pruning_table(*c.pruners[k]));
  }
  for (const DataSplit* d : {&c.train, &c.test}) {
    if (d->skipped() == 0) continue;
    c.say("warning: data: " + std::to_string(d->skipped()) + " unreadable " +
          (d == &c.train ? "training" : "test") + " sample(s) skipped, the first " +
          d->first_skipped());
  }
  const Experiment& x = *c.experiment;
  const RunSummary& s = c.summary;
  const json report = {
      {"shrink_version", version()},
      {"experiment", {{"file", x.file}, {"resolved", yaml_to_json(YAML::Load(x.resolved_yaml))}}},
      {"metrics",
       {{"baseline_accuracy", accuracy_or_null(s.baseline_accuracy)},
        {"compressed_accuracy", accuracy_or_null(s.compressed_accuracy)},
        {"exported_accuracy", accuracy_or_null(s.exported_accuracy)},
        {"int8_accuracy", accuracy_or_null(s.int8_accuracy)},
        {"pruned_accuracy", accuracy_or_null(s.pruned_accuracy)}}},
      {"data", data_json(c)},
      {"distributed",
       {{"world", c.world()},
        {"backend", x.distributed.backend},
        {"sync_bn", x.distributed.sync_bn && c.world() > 1}}},
      {"train", train_json(c)},
      {"calibration", c.calibration},
      {"folded_batchnorms", folded_pairs(c)},
      {"shared_points", c.shared_points},
      {"pruning", c.pruning},
      {"channel_removal", c.channel_removal},
      {"int8", c.int8},
      {"latency", c.latency},
      {"sites", c.sites},
      {"passes", c.pass_seconds}};
  std::filesystem::create_directories(c.staging);
  write_json(std::filesystem::path(c.staging) / "report.json", report);
}

}  // namespace shrink
