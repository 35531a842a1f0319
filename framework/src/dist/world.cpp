#include <shrink/core/error.hpp>
#include <shrink/dist/world.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

namespace shrink {
namespace {

using Getenv = std::function<const char*(const char*)>;

// The variable's integer value in [min, max], or `fallback` when it is unset.
int integer_variable(const Getenv& getenv, const char* name, int fallback, int min, int max) {
  const char* text = name != nullptr ? getenv(name) : nullptr;
  if (text == nullptr) return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  SHRINK_CHECK(end != text && *end == '\0' && value >= min && value <= max,
               "environment: " << name << "=" << text << ": expected an integer in [" << min << ", "
                               << max << "]");
  return static_cast<int>(value);
}

// The names one launcher gives rank, world size, local rank and local world size.
struct LauncherNames {
  const char* launcher;
  const char* rank;
  const char* world;
  const char* local_rank;
  const char* local_world;
};

constexpr LauncherNames kLaunchers[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
    // srun's step, not the job's allocation (a batch script's shell has SLURM_NTASKS too). Slurm
    // writes tasks per node as "2(x3)": the local world size stays unknown (1).
    {"slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", nullptr},
    {"mpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"},
    {"mpi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
};

}  // namespace

WorldPlace world_place_from_environment(const Getenv& given) {
  const Getenv getenv = given ? given : [](const char* name) { return std::getenv(name); };
  constexpr int kMaxWorld = 1 << 20;
  WorldPlace place;
  // torchrun's pair half given is a launcher's mistake, not a single process.
  SHRINK_CHECK(getenv("RANK") == nullptr || getenv("WORLD_SIZE") != nullptr,
               "environment: RANK is set but WORLD_SIZE is not");
  for (const LauncherNames& names : kLaunchers) {
    if (getenv(names.world) == nullptr) continue;
    place.launcher = names.launcher;
    place.world = integer_variable(getenv, names.world, 1, 1, kMaxWorld);
    SHRINK_CHECK(getenv(names.rank) != nullptr,
                 "environment: " << names.world << " is set but " << names.rank << " is not");
    place.rank = integer_variable(getenv, names.rank, 0, 0, place.world - 1);
    place.local_world = integer_variable(getenv, names.local_world, 1, 1, place.world);
    const int locals = names.local_world != nullptr ? place.local_world : place.world;
    place.local_rank = integer_variable(getenv, names.local_rank, 0, 0, locals - 1);
    break;
  }
  if (const char* addr = getenv("MASTER_ADDR"); addr != nullptr && *addr != '\0') {
    place.master_addr = addr;
  }
  place.master_port = integer_variable(getenv, "MASTER_PORT", place.master_port, 1, 65535);
  // As torch.distributed's env:// does under torchrun.
  if (const char* agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
      agent != nullptr && std::string(agent) == "True") {
    const int attempt = integer_variable(getenv, "TORCHELASTIC_RESTART_COUNT", 0, 0, 1 << 20);
    place.agent_store_prefix = "/worker/attempt_" + std::to_string(attempt);
  }
  return place;
}

int free_local_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  SHRINK_CHECK(fd >= 0, "no socket for the rendezvous: " << std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  const int error = errno;
  close(fd);
  SHRINK_CHECK(ok, "no free port on 127.0.0.1: " << std::strerror(error));
  return ntohs(addr.sin_port);
}

}  // namespace shrink
