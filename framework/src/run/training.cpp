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

// What seeds an epoch's order and augmentation: the phase's name and the epoch, so that pretraining
// and fine-tuning do not repeat each other's batches, and a resumed epoch is the one it replaces.
int64_t epoch_key(const std::string& phase, int64_t epoch) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char ch : phase) h = (h ^ ch) * 1099511628211ULL;
  return static_cast<int64_t>((h & 0xffffffffULL) << 20) + epoch;
}

// One epoch's batches, in a random order; stops early when spec.steps is reached.
EpochTotals train_one_epoch(RunContext& c, torch::optim::Optimizer& optimizer,
                            const TrainSpec& spec, const std::string& phase, int64_t epoch,
                            int64_t epochs, PhaseProgress& progress, TrainingHooks* hooks) {
  const int64_t per_epoch = c.batches_per_epoch();
  const int64_t key = epoch_key(phase, epoch);
  Loader loader(c.train, c.train.order(key), c.experiment->batch_size, true, key);
  EpochTotals totals;
  Batch batch;
  for (int64_t b = 0; b < per_epoch; ++b) {
    // The step budget first: a batch asked for past it would be prepared for nothing.
    if (spec.steps > 0 && progress.steps_done >= spec.steps) break;
    if (!loader.next(batch)) break;
    // A step per batch is what resume replays; a batch with nothing readable has no step.
    SHRINK_CHECK(batch.size() > 0, phase << " epoch " << epoch + 1 << ", batch " << b + 1
                                         << ": every sample of it is unreadable (skipped); "
                                            "fix or remove those files");
    if (hooks) hooks->before_step(progress.steps_done);
    train_step(c, optimizer, batch.inputs, batch.targets, hooks, totals, {phase, epoch, b});
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

double evaluate(RunContext& c, torch::jit::Module& module, const DataSplit& data,
                torch::jit::Module* reference, double* sqnr_db) {
  torch::NoGradGuard no_grad;
  c.set_training(false);
  module.eval();
  if (reference != nullptr) reference->eval();
  int64_t correct = 0, seen = 0;
  double signal = 0, noise = 0;
  Loader loader(data, at::arange(data.size(), at::kLong), c.experiment->test_batch_size, false, 0);
  Batch batch;
  while (loader.next(batch)) {
    if (batch.size() == 0) continue;
    const at::Tensor& x = batch.inputs;
    const at::Tensor out = module.forward({x}).toTensor();
    correct += out.argmax(1).eq(batch.targets).sum().item<int64_t>();
    seen += batch.size();
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
  return seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0.0;
}

at::Tensor seeded_order(const RunContext& c) { return c.train.order(-1); }

int64_t calibration_batch_size(const RunContext& c, const CalibrationSpec& spec) {
  return spec.batch_size > 0 ? spec.batch_size : c.experiment->batch_size;
}

}  // namespace shrink
