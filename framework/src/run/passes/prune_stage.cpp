#include <shrink/graph/model.hpp>
#include <shrink/prune/pruning_stage.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>
#include <shrink/run/plan.hpp>

#include "run/report_json.hpp"
#include "run/training.hpp"

#include <torch/script.h>

#include <iomanip>
#include <sstream>

namespace shrink {
namespace {

// A pruning stage's mask updates spread over its own training, with its plugin's hooks and
// penalty. Update u (1-based) of U over T steps falls before step floor((u - 1) T / U) (the first
// before any training), or, for a plugin that ranks by what it observes in training, after step
// ceil(u T / U) - 1 (the last after the last step).
class ScheduledMasks : public TrainingHooks {
 public:
  ScheduledMasks(RunContext& c, PruningStage& stage, const StageSpec& spec, bool at_end,
                 std::string name)
      : c_(c),
        stage_(stage),
        spec_(spec),
        kind_(schedule_from_name(spec.schedule.kind, spec.schedule.where)),
        at_end_(at_end),
        name_(std::move(name)) {}

  void train() {
    const TrainSpec& t = spec_.train;
    total_steps_ = t.steps > 0 ? t.steps : t.epochs * c_.batches_per_epoch();
    PhaseProgress progress;
    if (stage_.observes_outputs()) stage_.tap_outputs(c_.model->module());
    train_epochs(c_, t, name_, progress, /*resumable=*/false, this);
    stage_.untap_outputs(c_.model->module());
  }
  // The updates still due: all of them without training, or those after an early end.
  void finish() {
    while (done_ < updates()) update();
  }

  void before_epoch(int64_t epoch) override { stage_.update_epoch(static_cast<int>(epoch)); }
  void before_step(int64_t step) override { updates_due(step, false); }
  at::Tensor penalty() override { return stage_.penalty(); }
  void after_backward() override { stage_.observe(); }
  void after_step(int64_t step) override {
    stage_.step();
    updates_due(step, true);
  }

 private:
  int64_t updates() const { return spec_.schedule.updates; }

  void updates_due(int64_t step, bool after) {
    while (done_ < updates()) {
      const int64_t u = done_ + 1, n = updates();
      const int64_t due = at_end_ ? (u * total_steps_ + n - 1) / n - 1 : (u - 1) * total_steps_ / n;
      if (due != step || after != at_end_) return;
      update();
    }
  }

  void update() {
    const int64_t u = ++done_;
    stage_.update(kind_, u, updates());
    const nlohmann::json t = pruning_table(stage_);
    std::ostringstream line;
    line << name_ << " masks " << u << "/" << updates() << ": weight sparsity " << std::fixed
         << std::setprecision(3) << t["weight_sparsity"].get<double>() << " (";
    for (std::size_t k = 0; k < t["ops"].size(); ++k) {
      const nlohmann::json& op = t["ops"][k];
      line << (k ? ", " : "") << op["op"].get<std::string>() << " "
           << op["weight_sparsity"].get<double>();
    }
    c_.say(line.str() + ")");
  }

  RunContext& c_;
  PruningStage& stage_;
  const StageSpec& spec_;
  Schedule kind_;
  bool at_end_;
  std::string name_;
  int64_t total_steps_ = 0;
  int64_t done_ = 0;
};

// The stage's masks' holder, kept in the context so that its masks hold in every later step.
PruningStage& add_pruner(RunContext& c, std::size_t i, const std::string& name) {
  const CheckedStage& checked = c.stages[i];
  c.pruners.push_back(
      std::make_unique<PruningStage>(*checked.algorithm, c.experiment->compress[i].options,
                                     checked.prune_targets, c.model->module(), name));
  return *c.pruners.back();
}

nlohmann::json schedule_json(const StageSpec& stage) {
  return {{"kind", stage.schedule.kind}, {"updates", stage.schedule.updates}};
}

}  // namespace

std::string PruneStagePass::name() const { return stage_name(stage_); }

void PruneStagePass::restore(RunContext& c) {
  // The checkpoint holds the masks and the pruned weights; the table comes at export.
  const StageSpec& stage = c.experiment->compress[stage_];
  add_pruner(c, stage_, name());
  c.pruning.push_back({{"stage", stage_},
                       {"plugin", stage.plugin},
                       {"ops", nullptr},
                       {"schedule", schedule_json(stage)}});
}

void PruneStagePass::run(RunContext& c) {
  const StageSpec& stage = c.experiment->compress[stage_];
  PruningStage& pruner = add_pruner(c, stage_, name());
  const int64_t n = stage.schedule.updates;
  c.say(name() + ": " + stage.plugin + " on " + std::to_string(pruner.ops().size()) + " ops, " +
        stage.schedule.kind + " schedule over " + std::to_string(n) + " mask update" +
        (n == 1 ? "" : "s"));
  ScheduledMasks masks(c, pruner, stage, ranks_in_training(*c.stages[stage_].algorithm), name());
  if (stage.train.enabled) masks.train();
  masks.finish();
  nlohmann::json entry = pruning_table(pruner);
  entry["stage"] = stage_;
  entry["plugin"] = stage.plugin;
  entry["schedule"] = schedule_json(stage);
  if (c.experiment->evaluate) {
    const double accuracy = evaluate(c, c.model->module(), c.test);
    entry["accuracy"] = accuracy;
    std::ostringstream line;
    line.precision(4);
    line << name() << " accuracy " << accuracy;
    c.say(line.str());
  }
  c.pruning.push_back(entry);
}

}  // namespace shrink
