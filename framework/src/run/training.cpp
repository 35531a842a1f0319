#include "run/training.hpp"

#include "run/checkpoint.hpp"

#include <shrink/core/error.hpp>
#include <shrink/core/one_line_error.hpp>
#include <shrink/dist/communicator.hpp>
#include <shrink/dist/gradient_reducer.hpp>
#include <shrink/graph/model.hpp>
#include <shrink/graph/sync_batch_norm.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/prune/pruning_stage.hpp>
#include <shrink/run/instrument.hpp>

#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
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

// The names of trained_parameters' tensors, in their order (decayed, then exempt): the model's
// by path, the plugins' by site.
std::vector<std::string> parameter_names(RunContext& c) {
  std::vector<std::string> decayed, exempt;
  for (const auto& p : c.model->module().named_parameters()) decayed.push_back(p.name);
  for (auto& q : c.quantizers) {
    for (int site = 0; site < q->site_count(); ++site) {
      const SiteSpec& spec = q->site_spec(site);
      for (const SiteState& s : q->site_state(site)) {
        if (!s.learnable) continue;
        (s.weight_decay ? decayed : exempt)
            .push_back(spec.module_name + "." + spec.target + "." + s.name);
      }
    }
  }
  decayed.insert(decayed.end(), exempt.begin(), exempt.end());
  return decayed;
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

// Rank 0's values of `tensors` on every rank.
void from_rank_zero(RunContext& c, std::vector<at::Tensor>& tensors, const std::string& what) {
  torch::NoGradGuard no_grad;
  c.comm->broadcast(tensors, 0, what);
}

// The model's buffers; `floating_only`: the running statistics alone (integer buffers, such as
// a BatchNorm's num_batches_tracked, count steps alike on every rank).
std::vector<at::Tensor> buffers_of(RunContext& c, bool floating_only) {
  std::vector<at::Tensor> out;
  for (const auto& b : c.model->module().buffers()) {
    if (!floating_only || b.is_floating_point()) out.push_back(b);
  }
  return out;
}

// What keeps a step the same on every rank: the gradient reducer and, unless BatchNorms
// synchronize, rank 0's running statistics broadcast before each forward (as
// DistributedDataParallel's broadcast_buffers; simulated folding reads them for the weights).
// Alone, nothing to broadcast.
struct StepSync {
  GradientReducer& reducer;
  std::vector<at::Tensor> statistics;
};

// The backward, with the gradients averaged over the ranks as it goes (GradientReducer).
void backward(RunContext& c, GradientReducer& reducer, const at::Tensor& loss) {
  reducer.before_backward(loss);
  try {
    loss.backward();
  } catch (const std::exception& e) {
    rethrow_one_line(e);  // a synchronized BatchNorm's backward said it already
    // The reducer's bucket all-reduce: Gloo's own exception, out of the autograd engine.
    if (c.comm->lost_peer(e)) c.comm->fail("the gradients' all-reduce", e);
    throw;
  }
}

// One optimizer step on batch (x, y), added to the epoch's totals.
void train_step(RunContext& c, torch::jit::Module& module, torch::optim::Optimizer& optimizer,
                StepSync& sync, const Batch& batch, TrainingHooks* hooks, EpochTotals& totals,
                const StepPlace& place) {
  const at::Tensor& x = batch.inputs;
  const at::Tensor& y = batch.targets;
  optimizer.zero_grad();
  sync.reducer.before_forward();
  if (!sync.statistics.empty()) from_rank_zero(c, sync.statistics, "BatchNorm");
  at::Tensor out = module.forward({x}).toTensor();
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
  backward(c, sync.reducer, loss);
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

// One epoch's batches, in a random order (this rank's share of it); stops early when spec.steps
// is reached.
EpochTotals train_one_epoch(RunContext& c, torch::jit::Module& module,
                            torch::optim::Optimizer& optimizer, StepSync& sync,
                            const TrainSpec& spec, const std::string& phase, int64_t epoch,
                            int64_t epochs, PhaseProgress& progress, TrainingHooks* hooks) {
  const int64_t per_epoch = c.batches_per_epoch();
  const int64_t key = epoch_key(phase, epoch);
  Loader loader(c.train, shard_positions(c.train.order(key), c.rank(), c.world(), true),
                c.experiment->batch_size, true, key);
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
    train_step(c, module, optimizer, sync, batch, hooks, totals, {phase, epoch, b});
    if (hooks) hooks->after_step(progress.steps_done);
    ++progress.steps_done;
    if (c.instruments) {
      c.instruments->on_batch({phase, epoch + 1, epochs, b + 1, per_epoch,
                               totals.loss_sum / static_cast<double>(totals.seen)});
    }
  }
  return totals;
}

// The epoch's totals over every rank (one rank's are its share's).
EpochTotals global_totals(RunContext& c, const EpochTotals& mine) {
  at::Tensor t =
      at::tensor({mine.loss_sum, static_cast<double>(mine.correct), static_cast<double>(mine.seen)},
                 at::kDouble);
  c.comm->all_reduce(t, ReduceOp::kSum, "the epoch's totals");
  return {t[0].item<double>(), static_cast<int64_t>(t[1].item<double>()),
          static_cast<int64_t>(t[2].item<double>())};
}

// Every quantization site's state (ranges, scales) and every mask, as one checksum each, must be
// the same on every rank: a plugin that keeps statistics of its rank's data without combining
// them would otherwise export rank 0's alone.
void check_same_state(RunContext& c, const std::string& when) {
  if (!c.comm->active()) return;
  std::vector<double> sums;
  std::vector<std::string> names;
  for (const auto& q : c.quantizers) {
    for (int site = 0; site < q->site_count(); ++site) {
      double sum = 0;
      for (const SiteState& state : q->site_state(site)) sum += checksum(state.value);
      const SiteSpec& spec = q->site_spec(site);
      sums.push_back(sum);
      names.push_back(q->algorithm().name + " site " + spec.module_name + "." + spec.target);
    }
  }
  c.comm->check_same(at::tensor(sums, at::kDouble), names, when);
}

}  // namespace

int64_t epochs_of(const RunContext& c, const TrainSpec& spec) {
  const int64_t per_epoch = c.batches_per_epoch();
  return spec.steps > 0 ? (spec.steps + per_epoch - 1) / per_epoch : spec.epochs;
}

void train_epochs(RunContext& c, const TrainSpec& spec, const std::string& phase,
                  PhaseProgress& progress, bool resumable, TrainingHooks* hooks) {
  const auto [decayed, exempt] = trained_parameters(c);
  std::vector<at::Tensor> trained = decayed;
  trained.insert(trained.end(), exempt.begin(), exempt.end());
  // As DistributedDataParallel at its start: rank 0's parameters and buffers everywhere.
  std::vector<at::Tensor> state = trained;
  for (const auto& b : buffers_of(c, false)) state.push_back(b);
  from_rank_zero(c, state, phase + ": the model's parameters from rank 0");
  GradientReducer reducer(*c.comm, trained, parameter_names(c));
  const bool synchronizes = c.experiment->distributed.sync_bn;
  StepSync sync{
      reducer, c.comm->active() && !synchronizes ? buffers_of(c, true) : std::vector<at::Tensor>{}};
  // distributed.sync_bn: a clone of the model (the same tensors) whose BatchNorms synchronize.
  std::optional<torch::jit::Module> synced;
  if (synchronizes && c.comm->active()) {
    synced = with_sync_batch_norm(c.model->module());
  }
  torch::jit::Module& module = synced ? *synced : c.model->module();
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
    module.train(true);
    const auto start = Clock::now();
    const EpochTotals t = global_totals(c, train_one_epoch(c, module, *optimizer, sync, spec, phase,
                                                           epoch, epochs, progress, hooks));
    check_same_state(c, phase + " epoch " + std::to_string(epoch + 1));
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
  // Each rank scores its share; every sample is scored once (no padding).
  const bool shared = c.comm->active();
  const at::Tensor all = at::arange(data.size(), at::kLong);
  Loader loader(data, shared ? shard_positions(all, c.rank(), c.world(), false) : all,
                c.experiment->test_batch_size, false, 0);
  // correct, seen, signal, noise
  at::Tensor sums = at::zeros({4}, at::kDouble);
  auto* s = sums.data_ptr<double>();
  Batch batch;
  while (loader.next(batch)) {
    if (batch.size() == 0) continue;
    const at::Tensor& x = batch.inputs;
    const at::Tensor out = module.forward({x}).toTensor();
    s[0] += static_cast<double>(out.argmax(1).eq(batch.targets).sum().item<int64_t>());
    s[1] += static_cast<double>(batch.size());
    if (reference != nullptr) {
      const at::Tensor ref = reference->forward({x}).toTensor().to(at::kDouble);
      s[2] += ref.pow(2).sum().item<double>();
      s[3] += (ref - out.to(at::kDouble)).pow(2).sum().item<double>();
    }
  }
  if (shared) c.comm->all_reduce(sums, ReduceOp::kSum, "the evaluation's counts");
  if (sqnr_db != nullptr) {
    *sqnr_db = s[3] > 0 ? 10.0 * std::log10(s[2] / s[3]) : std::numeric_limits<double>::infinity();
  }
  return s[1] > 0 ? s[0] / s[1] : 0.0;
}

at::Tensor seeded_order(const RunContext& c) { return c.train.order(-1); }

int64_t calibration_batch_size(const RunContext& c, const CalibrationSpec& spec) {
  return spec.batch_size > 0 ? spec.batch_size : c.experiment->batch_size;
}

}  // namespace shrink
