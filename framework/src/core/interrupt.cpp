#include <shrink/core/interrupt.hpp>

#include <atomic>
#include <csignal>
#include <initializer_list>

namespace shrink {

namespace {

// Written by whichever thread the kernel picks for the signal, read by the training loop.
std::atomic<int> received{0};
static_assert(std::atomic<int>::is_always_lock_free,
              "the handler may only touch lock-free atomics");

void restore_default(int signal) {
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  sigaction(signal, &action, nullptr);
}

extern "C" void note_signal(int signal) {
  received.store(signal);
  // The next SIGINT or SIGTERM, whichever comes, ends the process (sigaction is
  // async-signal-safe).
  restore_default(SIGINT);
  restore_default(SIGTERM);
}

}  // namespace

void catch_interrupts() {
  for (const int signal : {SIGINT, SIGTERM}) {
    struct sigaction old {};
    sigaction(signal, nullptr, &old);
    if (old.sa_handler == SIG_IGN) continue;  // ignored by whoever started us (nohup, `cmd &`)
    struct sigaction action {};
    action.sa_handler = note_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(signal, &action, nullptr);
  }
}

void default_interrupts() {
  restore_default(SIGINT);
  restore_default(SIGTERM);
}

int interrupt_signal() { return received.load(std::memory_order_relaxed); }

void clear_interrupt() { received.store(0); }

const char* signal_name(int signal) {
  switch (signal) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "a signal";
  }
}

}  // namespace shrink
