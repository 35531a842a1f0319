#include <shrink/core/interrupt.hpp>
#include <shrink/run/instruments.hpp>

namespace shrink {

PassMode StopOnInterrupt::before_pass(const Pass& pass, RunContext& context) {
  if (const int signal = interrupt_signal()) throw StopRequested{signal};
  return Instrument::before_pass(pass, context);
}

void StopOnInterrupt::on_batch(const BatchEnd& batch) {
  // The epoch's last batch: its end (and its checkpoint) comes first, then on_epoch stops.
  if (batch.batch == batch.batches) return;
  if (const int signal = interrupt_signal()) throw StopRequested{signal};
}

void StopOnInterrupt::on_epoch(const EpochEnd&, RunContext&) {
  if (const int signal = interrupt_signal()) throw StopRequested{signal};
}

}  // namespace shrink
