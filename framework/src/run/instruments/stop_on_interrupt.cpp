#include <shrink/core/interrupt.hpp>
#include <shrink/run/instruments.hpp>

namespace shrink {

PassMode StopOnInterrupt::before_pass(const Pass& pass, RunContext& context) {
  if (const int signal = interrupt_signal()) throw StopRequested{signal};
  return Instrument::before_pass(pass, context);
}

void StopOnInterrupt::on_batch(const BatchEnd&) {
  if (const int signal = interrupt_signal()) throw StopRequested{signal};
}

}  // namespace shrink
