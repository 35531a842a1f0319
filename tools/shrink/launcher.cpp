#include "launcher.hpp"

#include "process.hpp"

#include <shrink/core/error.hpp>
#include <shrink/dist/world.hpp>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace shrink_cli {
namespace {

// How long the other ranks get, once one has failed, to notice and say which (a dead peer's
// connection closes at once; the diagnosis reads the store for a few seconds).
constexpr auto kGrace = std::chrono::seconds(10);

// Signals a process sent the launcher (kill, a job scheduler), counted: each goes on to every
// rank. A terminal's Ctrl-C or Ctrl-Z reaches the ranks by itself (they are in the launcher's
// process group), so it is not sent again; a second Ctrl-C then ends them, as it ends one process.
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP};
volatile sig_atomic_t sent[3] = {0, 0, 0};

extern "C" void count_sent(int signal, siginfo_t* info, void*) {
  if (info != nullptr && info->si_code > 0) return;  // from the kernel: the terminal's, to all
  for (int i = 0; i < 3; ++i) {
    if (kForwarded[i] == signal) sent[i] = sent[i] + 1;
  }
}

void catch_signals_to_forward() {
  for (const int signal : kForwarded) {
    struct sigaction old {};
    sigaction(signal, nullptr, &old);
    if (old.sa_handler == SIG_IGN) continue;  // ignored by whoever started us (nohup)
    struct sigaction action {};
    action.sa_sigaction = count_sent;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(signal, &action, nullptr);
  }
}

// The environment of rank `rank`: ours, with torchrun's variables set (replacing any).
std::vector<std::string> rank_environment(int rank, int nproc, int port) {
  std::vector<std::string> env = environment_without(
      {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT="});
  const bool threads_set = std::any_of(env.begin(), env.end(), [](const std::string& entry) {
    return entry.rfind("OMP_NUM_THREADS=", 0) == 0;
  });
  const std::string r = std::to_string(rank), n = std::to_string(nproc);
  env.push_back("SHRINK_NPROC=" + n);  // for the resume hint a rank prints
  for (const std::string& v :
       {"RANK=" + r, "WORLD_SIZE=" + n, "LOCAL_RANK=" + r, "LOCAL_WORLD_SIZE=" + n,
        std::string("MASTER_ADDR=127.0.0.1"), "MASTER_PORT=" + std::to_string(port)}) {
    env.push_back(v);
  }
  // The cores shared out (torchrun sets 1 thread a rank; the cores divided wastes none): N ranks
  // each with every core would oversubscribe them.
  if (!threads_set) {
    const long cores = std::max(1L, static_cast<long>(std::thread::hardware_concurrency()));
    env.push_back("OMP_NUM_THREADS=" + std::to_string(std::max(1L, cores / nproc)));
  }
  return env;
}

// The ranks started, and how they ended.
struct Ranks {
  std::vector<pid_t> pids;
  std::vector<bool> done;
  int left = 0;
  int result = 0;  // the first failing rank's exit status
  bool failed = false;
  std::chrono::steady_clock::time_point failed_at;

  void signal_running(int signal) const {
    for (std::size_t r = 0; r < pids.size(); ++r) {
      if (!done[r]) kill(pids[r], signal);
    }
  }

  // Rank `pid` ended with `status`.
  void ended(pid_t pid, int status, bool killed_by_us) {
    const auto r =
        static_cast<std::size_t>(std::find(pids.begin(), pids.end(), pid) - pids.begin());
    if (r >= pids.size() || done[r]) return;
    done[r] = true;
    --left;
    const int code = exit_status(status);
    if (code != 0 && !failed) {
      failed = true;
      failed_at = std::chrono::steady_clock::now();
      result = code;
    }
    if (WIFSIGNALED(status) && !killed_by_us) {  // it cannot say so itself
      std::fprintf(stderr, "shrink: --nproc: rank %zu was ended by signal %d (%s)\n", r,
                   WTERMSIG(status), strsignal(WTERMSIG(status)));
    }
  }
};

}  // namespace

std::vector<std::string> without_nproc(int argc, char** argv) {
  std::vector<std::string> out;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--nproc") {
      ++i;
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0) continue;
    out.push_back(a);
  }
  return out;
}

int launch_local(int nproc, const std::vector<std::string>& command) {
  const int port = shrink::free_local_port();
  catch_signals_to_forward();
  Ranks ranks;
  for (int r = 0; r < nproc; ++r) {
    ranks.pids.push_back(start_self(command, rank_environment(r, nproc, port), "a rank (--nproc)"));
  }
  ranks.done.assign(static_cast<std::size_t>(nproc), false);
  ranks.left = nproc;
  int forwarded[3] = {0, 0, 0};
  bool terminated = false;
  while (ranks.left > 0) {
    int status = 0;
    if (const pid_t pid = waitpid(-1, &status, WNOHANG); pid > 0) {
      ranks.ended(pid, status, terminated);
      continue;
    }
    for (int i = 0; i < 3; ++i) {
      for (; forwarded[i] < sent[i]; ++forwarded[i]) ranks.signal_running(kForwarded[i]);
    }
    if (ranks.failed && !terminated &&
        std::chrono::steady_clock::now() - ranks.failed_at > kGrace) {
      terminated = true;
      ranks.signal_running(SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (terminated) {
    std::fprintf(stderr,
                 "shrink: --nproc: stopped the ranks still running %lld s after one failed\n",
                 static_cast<long long>(kGrace.count()));
  }
  return ranks.result;
}

}  // namespace shrink_cli
