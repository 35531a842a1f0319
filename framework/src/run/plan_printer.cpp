#include <shrink/graph/model.hpp>
#include <shrink/run/plan.hpp>

#include <algorithm>
#include <iomanip>
#include <ostream>

namespace shrink {
namespace {

void train_line(std::ostream& os, const char* name, const TrainSpec& t) {
  os << "  " << std::left << std::setw(10) << name;
  if (!t.enabled) {
    os << "none\n";
    return;
  }
  os << (t.steps ? std::to_string(t.steps) + " steps" : std::to_string(t.epochs) + " epochs")
     << ", " << t.optimizer.name << " lr " << t.optimizer.lr << " momentum " << t.optimizer.momentum
     << " weight_decay " << t.optimizer.weight_decay;
  if (t.scheduler.name != "none") os << ", " << t.scheduler.name << " schedule";
  os << "\n";
}

void pruning_stage_lines(std::ostream& os, std::size_t i, const StageSpec& st,
                         const CheckedStage& checked) {
  os << "  compress  [" << i << "] " << st.plugin << " (" << checked.algorithm->plugin->file
     << "): prunes " << checked.prune_targets.size() << " ops, " << st.schedule.kind
     << " schedule, " << st.schedule.updates << " mask update"
     << (st.schedule.updates == 1 ? "" : "s") << "\n";
  if (st.train.enabled) train_line(os, "  train", st.train);
  for (const auto& t : checked.prune_targets) {
    os << "              " << t.op_name << " (" << t.op_type << ") "
       << (t.global ? "total_sparsity " : "sparse_ratio ") << t.sparsity;
    if (t.max_sparsity < 1.0) os << ", at most " << t.max_sparsity;
    os << "\n";
  }
}

void quantizer_stage_lines(std::ostream& os, std::size_t i, const Experiment& x,
                           const CheckedStage& checked) {
  const StageSpec& st = x.compress[i];
  os << "  compress  [" << i << "] " << st.plugin << " (" << checked.algorithm->plugin->file
     << "): " << checked.sites.size() << " sites\n";
  if (st.calibration.batches > 0) {
    const CalibrationSpec& cal = st.calibration;
    os << "              calibration: " << cal.batches << " batches of "
       << (cal.batch_size > 0 ? cal.batch_size : x.batch_size) << " training samples\n";
  }
  for (const auto& s : checked.sites) {
    os << "              " << s.key() << " " << *s.config.find("quant_dtype") << " "
       << *s.config.find("quant_scheme") << " " << *s.config.find("granularity")
       << (s.why.empty() ? "" : ": " + s.why) << "\n";
  }
  for (const std::string& note : checked.site_notes) os << "              " << note << "\n";
}

void export_line(std::ostream& os, const Experiment& x, const std::vector<CheckedStage>& stages) {
  bool quantizes = false, prunes = false;
  for (const CheckedStage& s : stages) {
    if (s.algorithm) (s.prunes ? prunes : quantizes) = true;
  }
  os << "  export    " << x.export_dir << " (report.json, run.log"
     << (quantizes ? ", calibration.json" : "") << (prunes ? ", masks.pt" : "");
  const bool pruned_model = writes_pruned_model(stages);
  if (x.export_model) {
    os << (pruned_model ? ", model_pruned.pt" : "") << (quantizes ? ", model_qat.pt" : "")
       << (quantizes || prunes ? "" : ", model_fp32.pt");
  }
  os << (x.export_int8 ? ", model_int8.pt" : "") << ")\n";
  if (x.export_latency && x.export_model && (x.export_int8 || pruned_model)) {
    os << "  latency   "
       << (x.export_int8 && pruned_model ? "model_int8.pt and model_pruned.pt"
           : x.export_int8               ? "model_int8.pt"
                                         : "model_pruned.pt")
       << " vs the fp32 model (as loaded, and frozen + optimize_for_inference), batch 1"
       << (x.batch_size > 1 ? " and " + std::to_string(x.batch_size) : "") << ", 1 thread\n";
  }
}

}  // namespace

void print_plan(const Experiment& x, const Model& model, const std::vector<CheckedStage>& stages,
                std::ostream& os) {
  os << "experiment " << x.file << "\n";
  os << "  model     " << x.model << " (" << model.ops().size() << " ops)\n";
  const std::string& source = x.data.list.empty() ? x.data.path : x.data.list;
  os << "  data      " << x.data.format << " " << source << ", batch " << x.batch_size
     << (x.data.train_limit
             ? ", a random " + std::to_string(x.data.train_limit) + " training samples (seeded)"
             : "")
     << (x.data.test_limit ? ", a random " + std::to_string(x.data.test_limit) + " test samples"
                           : "")
     << (x.data.test_path == x.data.path && x.data.test_list == x.data.list
             ? ", evaluated on the training data"
             : "")
     << "\n";
  train_line(os, "pretrain", x.pretrain);
  for (std::size_t i = 0; i < stages.size(); ++i) {
    if (stages[i].removes_channels) {
      os << "  compress  [" << i
         << "] remove_channels: the pruned channels removed from the "
            "model\n";
    } else if (stages[i].prunes) {
      pruning_stage_lines(os, i, x.compress[i], stages[i]);
    } else {
      quantizer_stage_lines(os, i, x, stages[i]);
    }
  }
  train_line(os, "finetune", x.finetune);
  os << "  evaluate  " << (x.evaluate ? "top-1 accuracy" : "no") << "\n";
  export_line(os, x, stages);
}

}  // namespace shrink
