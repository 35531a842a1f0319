#include "isa_bench.hpp"

#include "process.hpp"

#include <shrink/core/error.hpp>
#include <shrink/core/interrupt.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <sstream>
#include <string>
#include <vector>

namespace shrink_cli {
namespace {

std::string joined(const std::vector<int64_t>& sizes) {
  std::string s;
  for (int64_t d : sizes) s += (s.empty() ? "" : ",") + std::to_string(d);
  return s;
}

std::vector<std::string> bench_command(const shrink::IsaBench& r) {
  return {"shrink",
          "bench",
          r.fp32_model,
          "--int8",
          r.int8_model,
          "--shape",
          joined(r.sample_shape),
          "--batch",
          std::to_string(r.batch),
          "--threads",
          "1",
          "--runs",
          std::to_string(std::max(1, r.rounds)),
          "--json"};
}

// The child's output until it closes it, or until `deadline` or an interrupt: false then.
bool read_all(int fd, std::chrono::steady_clock::time_point deadline, std::string& output) {
  char buffer[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || shrink::interrupt_signal() != 0) return false;
    pollfd p{fd, POLLIN, 0};
    // Waking every 200 ms sees an interrupt: SA_RESTART would resume a blocked read.
    const int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 200)));
    if (ready < 0 && errno != EINTR) return false;
    if (ready <= 0) continue;
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n == 0) return true;
    if (n > 0) output.append(buffer, static_cast<std::size_t>(n));
    if (n < 0 && errno != EINTR) return false;
  }
}

// Runs the bench; its output (stdout and stderr), and how it ended (exit_status; -1: stopped at
// the deadline or by an interrupt, then killed).
std::pair<std::string, int> run_bench(const shrink::IsaBench& request) {
  int fds[2];
  SHRINK_CHECK(pipe2(fds, O_CLOEXEC) == 0, "could not open a pipe to a child process");
  std::vector<std::string> env = environment_without({"ONEDNN_MAX_CPU_ISA=", "DNNL_MAX_CPU_ISA="});
  env.push_back("ONEDNN_MAX_CPU_ISA=" + request.isa);
  pid_t pid = -1;
  try {
    pid = start_self(bench_command(request), std::move(env), "shrink bench", fds[1]);
  } catch (...) {
    close(fds[0]);
    close(fds[1]);
    throw;
  }
  close(fds[1]);
  std::string output;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::duration<double>(request.timeout_s));
  const bool ended = read_all(fds[0], deadline, output);
  close(fds[0]);
  if (!ended) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return {output, ended ? exit_status(status) : -1};
}

// The last line that is a JSON object (the bench's --json line), and the last other one.
std::pair<std::string, std::string> last_lines(const std::string& text) {
  std::istringstream lines(text);
  std::string line, json, other;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    (line.front() == '{' ? json : other) = line;
  }
  return {json, other};
}

}  // namespace

nlohmann::json bench_with_isa(const shrink::IsaBench& request) {
  const auto [output, status] = run_bench(request);
  const auto [json, other] = last_lines(output);
  const std::string who = "shrink bench with ONEDNN_MAX_CPU_ISA=" + request.isa;
  SHRINK_CHECK(status >= 0, who << " did not end within " << request.timeout_s
                                << " s (or the run was interrupted); it was stopped");
  SHRINK_CHECK(status == 0,
               who << " ended with status " << status << (other.empty() ? "" : ": " + other));
  try {
    return nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception&) {
    throw shrink::Error(who + " printed no JSON line" + (other.empty() ? "" : ": " + other));
  }
}

}  // namespace shrink_cli
