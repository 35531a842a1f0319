// Where this process stands in a distributed run, as its launcher says it: torchrun's variables
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or Slurm's (srun:
// SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID) or an MPI launcher's (Open MPI's
// OMPI_COMM_WORLD_*, MPICH's PMI_RANK / PMI_SIZE) when torchrun's are absent. No launcher: one
// process alone. docs/distributed.md shows each launcher.
#pragma once

#include <functional>
#include <string>

namespace shrink {

struct WorldPlace {
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  int local_world = 1;
  std::string master_addr = "127.0.0.1";  // where rank 0 hosts the TCPStore
  int master_port = 29500;                // torchrun's default
  std::string launcher;                   // "torchrun", "slurm", "mpi"; "" when alone
  // torchrun's agent hosts the store at MASTER_ADDR:MASTER_PORT itself
  // (TORCHELASTIC_USE_AGENT_STORE=True): every rank is its client, under this key prefix
  // ("/worker/attempt_<TORCHELASTIC_RESTART_COUNT>"); "" when rank 0 hosts the store.
  std::string agent_store_prefix;
  bool distributed() const { return world > 1; }
};

// Reads the launcher's variables through `getenv` (the process environment by default). A value
// that is not a number in range is a shrink::Error naming the variable and its value.
WorldPlace world_place_from_environment(
    const std::function<const char*(const char*)>& getenv = nullptr);

// A TCP port free a moment ago on 127.0.0.1, for a rendezvous on this machine (shrink run
// --nproc); a shrink::Error when there is none.
int free_local_port();

}  // namespace shrink
