// This executable started again as a child process: the `--nproc` launcher's ranks and the
// latency pass's timing under another oneDNN instruction set.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace shrink_cli {

// Our environment without the entries that start with one of `prefixes` ("RANK=", ...).
std::vector<std::string> environment_without(const std::vector<std::string>& prefixes);

// Starts /proc/self/exe with `command` (argv, the first being its name) and `env`, killed with
// us whatever kills us; `output_fd` >= 0 becomes its standard output and error. Throws
// shrink::Error when no process can be made. `what` names the child in the line it prints when exec
// fails.
pid_t start_self(std::vector<std::string> command, std::vector<std::string> env,
                 const std::string& what, int output_fd = -1);

// How a child ended, as a shell says it: its exit code, or 128 + the signal that ended it.
int exit_status(int status);

}  // namespace shrink_cli
