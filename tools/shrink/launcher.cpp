#include "launcher.hpp"

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

extern char** environ;

namespace shrink_cli {
namespace {

// How long the other ranks get, once one has failed, to notice and say which (a dead peer's
// connection closes at once; the diagnosis reads the store for a few seconds).
constexpr auto kGrace = std::chrono::seconds(10);

volatile sig_atomic_t forwarded_signal = 0;

extern "C" void remember_signal(int signal) { forwarded_signal = signal; }

// The environment of rank `rank`: ours, with torchrun's variables set (replacing any).
std::vector<std::string> rank_environment(int rank, int nproc, int port) {
  static const char* kOwn[] = {
      "RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT="};
  std::vector<std::string> env;
  bool threads_set = false;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    if (std::any_of(std::begin(kOwn), std::end(kOwn),
                    [&](const char* own) { return entry.rfind(own, 0) == 0; })) {
      continue;
    }
    threads_set = threads_set || entry.rfind("OMP_NUM_THREADS=", 0) == 0;
    env.push_back(entry);
  }
  const std::string r = std::to_string(rank), n = std::to_string(nproc);
  for (const std::string& v :
       {"RANK=" + r, "WORLD_SIZE=" + n, "LOCAL_RANK=" + r, "LOCAL_WORLD_SIZE=" + n,
        std::string("MASTER_ADDR=127.0.0.1"), "MASTER_PORT=" + std::to_string(port)}) {
    env.push_back(v);
  }
  // As torchrun, the cores shared out: N ranks each with every core would oversubscribe them.
  if (!threads_set) {
    const long cores = std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
    env.push_back("OMP_NUM_THREADS=" + std::to_string(std::max(1L, cores / nproc)));
  }
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

pid_t start_rank(std::vector<std::string> command, std::vector<std::string> env) {
  std::vector<char*> argv = pointers(command), envp = pointers(env);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  SHRINK_CHECK(pid >= 0, "--nproc: could not start a worker: " << std::strerror(errno));
  if (pid == 0) {
    // Its own process group, so that a terminal's Ctrl-C reaches it once, through us; and killed
    // with us, whatever kills us.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    execve("/proc/self/exe", argv.data(), envp.data());
    _exit(127);
  }
  return pid;
}

int exit_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

void signal_all(const std::vector<pid_t>& pids, const std::vector<bool>& done, int signal) {
  for (std::size_t r = 0; r < pids.size(); ++r) {
    if (!done[r]) kill(pids[r], signal);
  }
}

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
  struct sigaction action {};
  action.sa_handler = remember_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::vector<pid_t> pids;
  std::vector<bool> done(static_cast<std::size_t>(nproc), false);
  for (int r = 0; r < nproc; ++r)
    pids.push_back(start_rank(command, rank_environment(r, nproc, port)));
  int result = 0, left = nproc, forwarded = 0;
  std::chrono::steady_clock::time_point failed_at{};
  bool failed = false, terminated = false;
  while (left > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      const auto r =
          static_cast<std::size_t>(std::find(pids.begin(), pids.end(), pid) - pids.begin());
      if (r >= pids.size() || done[r]) continue;
      done[r] = true;
      --left;
      const int code = exit_status(status);
      if (code != 0 && !failed) {
        failed = true;
        failed_at = std::chrono::steady_clock::now();
        result = code;
      }
      if (WIFSIGNALED(status) && !terminated) {
        // It cannot say so itself.
        std::fprintf(stderr, "shrink: --nproc: rank %zu was ended by signal %d (%s)\n", r,
                     WTERMSIG(status), strsignal(WTERMSIG(status)));
      }
      continue;
    }
    if (forwarded_signal != 0 && forwarded_signal != forwarded) {
      forwarded = forwarded_signal;
      signal_all(pids, done, forwarded);
    }
    if (failed && !terminated && std::chrono::steady_clock::now() - failed_at > kGrace) {
      terminated = true;
      signal_all(pids, done, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (failed && terminated) {
    std::fprintf(stderr,
                 "shrink: --nproc: stopped the ranks still running %lld s after one failed\n",
                 static_cast<long long>(kGrace.count()));
  }
  return result;
}

}  // namespace shrink_cli
