// `shrink run --nproc N`: N local worker processes, started as torchrun would start them (RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT), on one
// machine without Python. No worker outlives the launcher: when one fails, the others get time to
// say which rank failed and why, then are stopped; a signal to the launcher goes to every worker.
#pragma once

#include <string>
#include <vector>

namespace shrink_cli {

// Runs `command` (argv, the first being this executable) as `nproc` ranks and waits for them. The
// result is the launcher's exit status: 0 when every rank succeeded; otherwise the first failing
// rank's (its exit code, or 128 + the signal that ended it).
int launch_local(int nproc, const std::vector<std::string>& command);

// argv without `--nproc N` / `--nproc=N`.
std::vector<std::string> without_nproc(int argc, char** argv);

}  // namespace shrink_cli
