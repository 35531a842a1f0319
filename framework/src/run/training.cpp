#include "run/training.hpp"

#include "run/checkpoint.hpp"

#include <shrink/core/error.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/prune/pruning_stage.hpp>
#include <shrink/run/instrument.hpp>

#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

namespace shrink {
namespace {

using Clock = std::chrono::steady_clock;

template <typename Options>
std::unique_ptr<torch::optim::Optimizer> with_groups(const Options& decayed,
                                                     const std::vector<at::Tensor>& params,
                                                     const std::vector<at::Tensor>& exempt) {
  using Optimizer = typename std::conditional_t<
      std::is_same_v<Options, torch::optim::AdamOptions>, torch::optim::Adam,
      std::conditional_t<std::is_same_v<Options, torch::optim::AdamWOptions>, torch::optim::AdamW,
                         torch::optim::SGD>>;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(params, std::make_unique<Options>(decayed));
  if (!exempt.empty()) {  // plugin parameters declared without weight decay
    auto undecayed = std::make_unique<Options>(decayed);
    undecayed->weight_decay(0.0);
    groups.emplace_back(exempt, std::move(undecayed));
  }
  return std::make_unique<Optimizer>(std::move(groups), decayed);
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerSpec& spec,
                                                        const std::vector<at::Tensor>& params,
                                                        const std::vector<at::Tensor>& exempt) {
  if (spec.name == "adam") {
    return with_groups(torch::optim::AdamOptions(spec.lr).weight_decay(spec.weight_decay), params,
                       exempt);
  }
  if (spec.name == "adamw") {
    return with_groups(torch::optim::AdamWOptions(spec.lr).weight_decay(spec.weight_decay), params,
                       exempt);
  }
  return with_groups(
      torch::optim::SGDOptions(spec.lr).momentum(spec.momentum).weight_decay(spec.weight_decay),
      params, exempt);
}

// The model's parameters and the plugins' learnable state, decayed; and the plugins' state
// declared exempt from weight decay.
std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> trained_parameters(RunContext& c) {
  std::vector<at::Tensor> decayed, exempt;
  for (const auto& p : c.model->module().parameters()) decayed.push_back(p);
  for (auto& q : c.quantizers) {
    for (const auto& p : q->parameters(true)) decayed.push_back(p);
    for (const auto& p : q->parameters(false)) exempt.push_back(p);
  }
  return {decayed, exempt};
}

struct EpochTotals {
  double loss_sum = 0;
  int64_t correct = 0;
  int64_t seen = 0;
};

// Where a training step is, for its error message.
struct StepPlace {
  const std::string& phase;
  int64_t epoch;  // 0-based
  int64_t batch;  // 0-based
};

// One optimizer step on batch (x, y), added to the epoch's totals.
void train_step(RunContext& c, torch::optim::Optimizer& optimizer, const at::Tensor& x,
                const at::Tensor& y, TrainingHooks* hooks, EpochTotals& totals,
                const StepPlace& place) {
  optimizer.zero_grad();
  at::Tensor out = c.model->module().forward({x}).toTensor();
  at::Tensor loss = torch::cross_entropy_loss(out, y);
  const double loss_value = loss.item<double>();
  SHRINK_CHECK(std::isfinite(loss_value), place.phase << " epoch " << place.epoch + 1 << ", batch "
                                                      << place.batch + 1
                                                      << ": the loss is not finite; lower the "
                                                         "learning rate");
  if (hooks) {
    at::Tensor penalty = hooks->penalty();
    if (penalty.defined()) loss = loss + penalty;
  }
  loss.backward();
  if (hooks) hooks->after_backward();
  for (auto& p : c.pruners) p->mask_gradients();
  optimizer.step();
  for (auto& p : c.pruners) p->apply_masks();
  for (auto& q : c.quantizers) q->step();
  totals.loss_sum += loss_value * static_cast<double>(x.size(0));
  totals.correct += out.argmax(1).eq(y).sum().item<int64_t>();
  totals.seen += x.size(0);
}

// One epoch's batches, in a random order; stops early when spec.steps is reached.
EpochTotals train_one_epoch(RunContext& c, torch::optim::Optimizer& optimizer,
                            const TrainSpec& spec, const std::string& phase, int64_t epoch,
                            int64_t epochs, PhaseProgress& progress, TrainingHooks* hooks) {
  const int64_t n = c.train.size(), batch = c.experiment->batch_size;
  const int64_t per_epoch = c.batches_per_epoch();
  const at::Tensor order = torch::randperm(n, torch::kLong);
  EpochTotals totals;
  for (int64_t b = 0; b < per_epoch; ++b) {
    if (spec.steps > 0 && progress.steps_done >= spec.steps) break;
    const at::Tensor index = order.narrow(0, b * batch, std::min(batch, n - b * batch));
    const at::Tensor x = c.train.inputs.index_select(0, index);
    const at::Tensor y = c.train.targets.index_select(0, index);
    if (hooks) hooks->before_step(progress.steps_done);
    train_step(c, optimizer, x, y, hooks, totals, {phase, epoch, b});
    if (hooks) hooks->after_step(progress.steps_done);
    ++progress.steps_done;
    if (c.instruments) {
      c.instruments->on_batch({phase, epoch + 1, epochs, b + 1, per_epoch,
                               totals.loss_sum / static_cast<double>(totals.seen)});
    }
  }
  return totals;
}

}  // namespace

int64_t epochs_of(const RunContext& c, const TrainSpec& spec) {
  const int64_t per_epoch = c.batches_per_epoch();
  return spec.steps > 0 ? (spec.steps + per_epoch - 1) / per_epoch : spec.epochs;
}

void train_epochs(RunContext& c, const TrainSpec& spec, const std::string& phase,
                  PhaseProgress& progress, bool resumable, TrainingHooks* hooks) {
  const auto [decayed, exempt] = trained_parameters(c);
  auto optimizer = make_optimizer(spec.optimizer, decayed, exempt);
  if (c.resume_optimizer != nullptr) c.resume_optimizer->load_optimizer(*optimizer);
  SHRINK_CHECK(c.train.size() > 0, "the training set is empty");
  const int64_t epochs = epochs_of(c, spec);
  for (int64_t epoch = progress.epochs_done; epoch < epochs; ++epoch) {
    const double lr = spec.scheduler.lr_at(spec.optimizer.lr, epoch, epochs);
    for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
    for (auto& q : c.quantizers) q->update_epoch(static_cast<int>(epoch));
    if (hooks) hooks->before_epoch(epoch);
    c.set_training(true);
    const auto start = Clock::now();
    const EpochTotals t =
        train_one_epoch(c, *optimizer, spec, phase, epoch, epochs, progress, hooks);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    progress.seconds += seconds;
    progress.images += t.seen;
    progress.epochs_done = epoch + 1;
    const double seen = static_cast<double>(std::max<int64_t>(t.seen, 1));
    if (c.instruments) {
      c.instruments->on_epoch(
          {phase, epoch + 1, epochs, t.loss_sum / seen, static_cast<double>(t.correct) / seen, lr,
           seconds, t.seen, resumable, optimizer.get()},
          c);
    }
  }
  c.set_training(false);
}

double evaluate(RunContext& c, torch::jit::Module& module, const Dataset& data,
                torch::jit::Module* reference, double* sqnr_db) {
  torch::NoGradGuard no_grad;
  c.set_training(false);
  module.eval();
  if (reference != nullptr) reference->eval();
  int64_t correct = 0;
  double signal = 0, noise = 0;
  for (int64_t start = 0; start < data.size(); start += c.experiment->test_batch_size) {
    const int64_t n = std::min(c.experiment->test_batch_size, data.size() - start);
    const at::Tensor x = data.inputs.narrow(0, start, n);
    const at::Tensor out = module.forward({x}).toTensor();
    correct += out.argmax(1).eq(data.targets.narrow(0, start, n)).sum().item<int64_t>();
    if (reference != nullptr) {
      const at::Tensor ref = reference->forward({x}).toTensor().to(at::kDouble);
      signal += ref.pow(2).sum().item<double>();
      noise += (ref - out.to(at::kDouble)).pow(2).sum().item<double>();
    }
  }
  if (sqnr_db != nullptr) {
    *sqnr_db =
        noise > 0 ? 10.0 * std::log10(signal / noise) : std::numeric_limits<double>::infinity();
  }
  return data.size() ? static_cast<double>(correct) / static_cast<double>(data.size()) : 0.0;
}

at::Tensor seeded_order(const RunContext& c) {
  at::Generator generator =
      at::detail::createCPUGenerator(static_cast<uint64_t>(c.experiment->seed));
  return at::randperm(c.train.size(), generator, at::TensorOptions(at::kLong));
}

int64_t calibration_batch_size(const RunContext& c, const CalibrationSpec& spec) {
  return spec.batch_size > 0 ? spec.batch_size : c.experiment->batch_size;
}

}  // namespace shrink
