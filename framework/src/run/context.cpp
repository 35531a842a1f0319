#include <shrink/dist/communicator.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/graph/quantized_model.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/prune/pruning_stage.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/instrument.hpp>

#include "run/checkpoint.hpp"

#include <torch/script.h>

namespace shrink {

nlohmann::json PhaseProgress::to_json() const {
  return {{"epochs_done", epochs_done},
          {"steps_done", steps_done},
          {"seconds", seconds},
          {"images", images}};
}

PhaseProgress PhaseProgress::from_json(const nlohmann::json& j) {
  PhaseProgress p;
  p.epochs_done = j.at("epochs_done").get<int64_t>();
  p.steps_done = j.at("steps_done").get<int64_t>();
  p.seconds = j.at("seconds").get<double>();
  p.images = j.at("images").get<int64_t>();
  return p;
}

double PhaseProgress::seconds_per_epoch(int64_t n) const {
  return images ? seconds * static_cast<double>(n) / static_cast<double>(images) : 0.0;
}

// Alone until run_experiment joins the run's ranks (passes driven by tests stay alone).
RunContext::RunContext() : comm(&current_communicator()) {}
RunContext::~RunContext() = default;

void RunContext::say(const std::string& line) const {
  if (instruments != nullptr) instruments->on_line(line);
}

void RunContext::set_training(bool on) {
  model->module().train(on);
  for (auto& q : quantizers) q->set_training(on);
}

int64_t RunContext::batches_per_epoch() const {
  const int64_t share = (train.size() + world() - 1) / world();
  return (share + experiment->batch_size - 1) / experiment->batch_size;
}

int RunContext::rank() const { return comm->rank(); }

int RunContext::world() const { return comm->world(); }

PhaseProgress& RunContext::progress(const std::string& phase) {
  return phase == "pretrain" ? pretrain : finetune;
}

}  // namespace shrink
