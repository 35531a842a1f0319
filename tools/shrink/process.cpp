#include "process.hpp"

#include <shrink/core/error.hpp>

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

extern char** environ;

namespace shrink_cli {
namespace {

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::vector<std::string> environment_without(const std::vector<std::string>& prefixes) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    if (std::none_of(prefixes.begin(), prefixes.end(),
                     [&](const std::string& p) { return entry.rfind(p, 0) == 0; })) {
      env.push_back(entry);
    }
  }
  return env;
}

pid_t start_self(std::vector<std::string> command, std::vector<std::string> env,
                 const std::string& what, int output_fd) {
  // Made before fork: the child only calls what is safe in a copy of a threaded process.
  std::vector<char*> argv = pointers(command), envp = pointers(env);
  const std::string failed = "shrink: could not start " + what + " (execve failed)\n";
  const pid_t parent = getpid();
  const pid_t pid = fork();
  SHRINK_CHECK(pid >= 0, "could not start " << what << ": " << std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);  // the parent died before prctl
    if (output_fd >= 0) {
      dup2(output_fd, STDOUT_FILENO);
      dup2(output_fd, STDERR_FILENO);
    }
    execve("/proc/self/exe", argv.data(), envp.data());
    (void)!write(2, failed.data(), failed.size());
    _exit(127);
  }
  return pid;
}

int exit_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace shrink_cli
