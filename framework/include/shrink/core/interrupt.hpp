// Ctrl-C and SIGTERM during a run. The first one is only noted: the run stops at the next step
// or pass boundary (run/instruments.hpp, StopOnInterrupt), keeps its latest checkpoint and says
// how to resume. A second one (SIGINT or SIGTERM) ends the process at once: the first restores
// the default action of both.
#pragma once

namespace shrink {

// Installs the handlers for SIGINT and SIGTERM; safe to call more than once. A signal the process
// was started with ignored (nohup, a background job of a script) stays ignored.
void catch_interrupts();

// Gives SIGINT and SIGTERM their default action back.
void default_interrupts();

// The signal received since the handlers were installed (SIGINT or SIGTERM), or 0.
int interrupt_signal();

// Forgets a received signal (for tests).
void clear_interrupt();

// "SIGINT", "SIGTERM", or "a signal".
const char* signal_name(int signal);

}  // namespace shrink
