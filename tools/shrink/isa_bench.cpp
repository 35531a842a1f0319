#include "isa_bench.hpp"

#include <shrink/core/error.hpp>

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace shrink_cli {
namespace {

std::string joined(const std::vector<int64_t>& sizes) {
  std::string s;
  for (int64_t d : sizes) s += (s.empty() ? "" : ",") + std::to_string(d);
  return s;
}

std::vector<std::string> bench_command(const shrink::IsaBench& r) {
  return {"shrink",  "bench",     r.fp32_model,  "--int8", r.int8_model,
          "--shape", joined(r.sample_shape),     "--batch", std::to_string(r.batch),
          "--threads", "1",        "--runs", std::to_string(std::max(1, r.rounds)), "--json"};
}

// Ours, with the instruction set capped (an earlier cap, under either name, replaced).
std::vector<std::string> capped_environment(const std::string& isa) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    if (entry.rfind("ONEDNN_MAX_CPU_ISA=", 0) == 0 || entry.rfind("DNNL_MAX_CPU_ISA=", 0) == 0) {
      continue;
    }
    env.push_back(entry);
  }
  env.push_back("ONEDNN_MAX_CPU_ISA=" + isa);
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Runs this executable with `command` and `env`; its stdout and stderr together, and its exit
// status (-1 when it did not end normally).
std::pair<std::string, int> run_self(std::vector<std::string> command,
                                     std::vector<std::string> env) {
  std::vector<char*> argv = pointers(command), envp = pointers(env);
  int fds[2];
  SHRINK_CHECK(pipe(fds) == 0, "could not open a pipe to a child process");
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    execve("/proc/self/exe", argv.data(), envp.data());
    _exit(127);
  }
  close(fds[1]);
  std::string output;
  char buffer[4096];
  for (ssize_t n; pid > 0 && (n = read(fds[0], buffer, sizeof buffer)) != 0;) {
    if (n > 0) output.append(buffer, static_cast<std::size_t>(n));
    if (n < 0 && errno != EINTR) break;
  }
  close(fds[0]);
  SHRINK_CHECK(pid > 0, "could not start a child process");
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return {output, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

std::string last_line(const std::string& text) {
  std::istringstream lines(text);
  std::string line, last;
  while (std::getline(lines, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

}  // namespace

nlohmann::json bench_with_isa(const shrink::IsaBench& request) {
  const auto [output, status] =
      run_self(bench_command(request), capped_environment(request.isa));
  const std::string last = last_line(output);
  SHRINK_CHECK(status == 0, "shrink bench with ONEDNN_MAX_CPU_ISA="
                                << request.isa << " ended with status " << status
                                << (last.empty() ? "" : ": " + last));
  try {
    return nlohmann::json::parse(last);
  } catch (const nlohmann::json::exception&) {
    throw shrink::Error("shrink bench with ONEDNN_MAX_CPU_ISA=" + request.isa +
                        " printed no JSON line: " + last);
  }
}

}  // namespace shrink_cli
