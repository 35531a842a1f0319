// Gloo all-reduce through Shrink's Communicator on 2 local ranks (the same TCPStore + Gloo process
// group a run uses): the time of one all-reduce of a float32 gradient of each size, the median of
// several, and the bus bandwidth 2 (N - 1) / N x bytes / time. docs/distributed.md turns these
// into what 8-64 ranks cost on real links.
//
//   cmake --build build --target allreduce_bench && build/bin/allreduce_bench
//
// Started without RANK it starts itself as rank 0 and rank 1 (as shrink run --nproc 2 would).
#include <shrink/dist/communicator.hpp>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

int start_ranks(char* self) {
  const std::string port = std::to_string(shrink::free_local_port());
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", "2", 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", port.c_str(), 1);
      execl("/proc/self/exe", self, nullptr);
      _exit(127);
    }
    pids.push_back(pid);
  }
  int worst = 0;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    worst = std::max(worst, WIFEXITED(status) ? WEXITSTATUS(status) : 1);
  }
  return worst;
}

}  // namespace

int main(int, char** argv) {
  if (std::getenv("RANK") == nullptr) return start_ranks(argv[0]);
  at::set_num_threads(1);
  const shrink::WorldPlace place = shrink::world_place_from_environment();
  auto ranks = shrink::Communicator::join(place, shrink::DistOptions{});
  // 1 MiB (DDP's first bucket), 25 MiB (its other buckets), resnet18's and resnet50's gradients.
  const std::vector<std::pair<const char*, int64_t>> sizes = {{"1 MiB bucket", 1 << 18},
                                                              {"25 MiB bucket", 25 << 18},
                                                              {"resnet18 (11.69 M)", 11689512},
                                                              {"resnet50 (25.56 M)", 25557032}};
  if (place.rank == 0)
    std::printf("%-20s %12s %12s %14s\n", "all-reduce of", "MB", "ms", "bus GB/s");
  for (const auto& [name, numel] : sizes) {
    at::Tensor t = at::ones({numel}, at::kFloat);
    std::vector<double> ms;
    for (int i = 0; i < 12; ++i) {
      const auto start = std::chrono::steady_clock::now();
      ranks->all_reduce(t, shrink::ReduceOp::kSum, "bench");
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
    }
    std::sort(ms.begin() + 2, ms.end());  // the first two warm up
    const double median = ms[2 + (ms.size() - 2) / 2];
    const double bytes = 4.0 * static_cast<double>(numel);
    const double bus = 2.0 * (place.world - 1) / place.world * bytes / (median * 1e-3) / 1e9;
    if (place.rank == 0)
      std::printf("%-20s %12.1f %12.2f %14.2f\n", name, bytes / 1e6, median, bus);
  }
  // A tiny all-reduce: the latency a step pays per bucket beyond the bytes.
  at::Tensor one = at::ones({1});
  std::vector<double> us;
  for (int i = 0; i < 200; ++i) {
    const auto start = std::chrono::steady_clock::now();
    ranks->all_reduce(one, shrink::ReduceOp::kSum, "bench");
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::sort(us.begin(), us.end());
  if (place.rank == 0) std::printf("one float: median %.1f us\n", us[us.size() / 2]);
  return 0;
}
