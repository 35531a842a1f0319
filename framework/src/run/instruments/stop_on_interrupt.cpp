#include <shrink/core/interrupt.hpp>
#include <shrink/dist/communicator.hpp>
#include <shrink/run/instruments.hpp>

#include <ATen/ATen.h>

namespace shrink {

// The signal that asks to stop, agreed by every rank (the highest any has seen), so that all stop
// at the same batch; 0 when none.
int StopOnInterrupt::signal() const {
  const int mine = interrupt_signal();
  if (ranks_ == nullptr || !ranks_->active()) return mine;
  at::Tensor t = at::full({1}, static_cast<double>(mine), at::kDouble);
  ranks_->all_reduce(t, ReduceOp::kMax, "agreeing on a stop");
  return static_cast<int>(t.item<double>());
}

PassMode StopOnInterrupt::before_pass(const Pass& pass, RunContext& context) {
  if (const int signal = this->signal()) throw StopRequested{signal};
  return Instrument::before_pass(pass, context);
}

void StopOnInterrupt::on_batch(const BatchEnd& batch) {
  // The epoch's last batch: its end (and its checkpoint) comes first, then on_epoch stops.
  if (batch.batch == batch.batches) return;
  // Ranks agree every 16th batch (a collective each step would cost as much as a BatchNorm's).
  if (ranks_ != nullptr && ranks_->active() && batch.batch % 16 != 0) return;
  if (const int signal = this->signal()) throw StopRequested{signal};
}

void StopOnInterrupt::on_epoch(const EpochEnd&, RunContext&) {
  if (const int signal = this->signal()) throw StopRequested{signal};
}

}  // namespace shrink
