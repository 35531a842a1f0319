// Where a process stands in a distributed run, from each launcher's variables, and how an epoch's
// order is dealt to the ranks.
#include <shrink/data/loader.hpp>
#include <shrink/dist/world.hpp>

#include "test_support.hpp"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace {

using Env = std::map<std::string, std::string>;

shrink::WorldPlace place_of(const Env& env) {
  return shrink::world_place_from_environment([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(WorldPlace, AloneWithoutALauncher) {
  const shrink::WorldPlace p = place_of({});
  EXPECT_FALSE(p.distributed());
  EXPECT_EQ(p.rank, 0);
  EXPECT_EQ(p.world, 1);
  EXPECT_EQ(p.launcher, "");
}

TEST(WorldPlace, TorchrunsVariables) {
  const shrink::WorldPlace p = place_of({{"RANK", "3"},
                                         {"WORLD_SIZE", "8"},
                                         {"LOCAL_RANK", "1"},
                                         {"LOCAL_WORLD_SIZE", "2"},
                                         {"MASTER_ADDR", "10.0.0.7"},
                                         {"MASTER_PORT", "29411"}});
  EXPECT_TRUE(p.distributed());
  EXPECT_EQ(p.launcher, "torchrun");
  EXPECT_EQ(p.rank, 3);
  EXPECT_EQ(p.world, 8);
  EXPECT_EQ(p.local_rank, 1);
  EXPECT_EQ(p.local_world, 2);
  EXPECT_EQ(p.master_addr, "10.0.0.7");
  EXPECT_EQ(p.master_port, 29411);
}

TEST(WorldPlace, SlurmAndMpiWhenTorchrunsAreAbsent) {
  const shrink::WorldPlace slurm = place_of({{"SLURM_PROCID", "5"},
                                             {"SLURM_STEP_NUM_TASKS", "6"},
                                             {"SLURM_LOCALID", "1"},
                                             {"SLURM_NTASKS_PER_NODE", "2(x3)"},
                                             {"MASTER_ADDR", "node1"}});
  EXPECT_EQ(slurm.launcher, "slurm");
  EXPECT_EQ(slurm.rank, 5);
  EXPECT_EQ(slurm.world, 6);
  EXPECT_EQ(slurm.local_rank, 1);
  EXPECT_EQ(slurm.master_addr, "node1");
  EXPECT_EQ(slurm.master_port, 29500);  // torchrun's default
  const shrink::WorldPlace mpi = place_of({{"OMPI_COMM_WORLD_RANK", "1"},
                                           {"OMPI_COMM_WORLD_SIZE", "4"},
                                           {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                           {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}});
  EXPECT_EQ(mpi.launcher, "mpi");
  EXPECT_EQ(mpi.rank, 1);
  EXPECT_EQ(mpi.local_world, 4);
  EXPECT_EQ(mpi.master_addr, "127.0.0.1");
  // torchrun's variables win over a launcher's that started torchrun.
  EXPECT_EQ(place_of({{"RANK", "0"},
                      {"WORLD_SIZE", "2"},
                      {"SLURM_PROCID", "1"},
                      {"SLURM_STEP_NUM_TASKS", "1"}})
                .launcher,
            "torchrun");
  // A batch script's shell (sbatch --ntasks=4) is no rank: srun starts the ranks.
  EXPECT_FALSE(place_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}}).distributed());
  EXPECT_EQ(
      shrink::test::error_of([] {
        place_of(
            {{"RANK", "1"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}});
      }),
      "environment: LOCAL_RANK=2: expected an integer in [0, 1]");
}

TEST(WorldPlace, BadValuesNameTheVariable) {
  using shrink::test::error_of;
  EXPECT_EQ(error_of([] {
              place_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}});
            }),
            "environment: RANK=2: expected an integer in [0, 1]");
  EXPECT_EQ(error_of([] {
              place_of({{"RANK", "0"}, {"WORLD_SIZE", "two"}});
            }),
            "environment: WORLD_SIZE=two: expected an integer in [1, 1048576]");
  EXPECT_EQ(error_of([] {
              place_of({{"WORLD_SIZE", "2"}});
            }),
            "environment: WORLD_SIZE is set but RANK is not");
  EXPECT_EQ(error_of([] {
              place_of({{"RANK", "1"}});
            }),
            "environment: RANK is set but WORLD_SIZE is not");
  EXPECT_EQ(error_of([] {
              place_of({{"RANK", ""}, {"WORLD_SIZE", "2"}});
            }),
            "environment: RANK=: expected an integer in [0, 1]");
  EXPECT_EQ(error_of([] {
              place_of({{"MASTER_PORT", "70000"}});
            }),
            "environment: MASTER_PORT=70000: expected an integer in [1, 65535]");
}

std::vector<int64_t> values(const at::Tensor& t) {
  const at::Tensor l = t.to(at::kLong).contiguous();
  return {l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel()};
}

TEST(ShardPositions, DealtAsDistributedSampler) {
  const at::Tensor order = at::tensor({9, 4, 7, 0, 3, 8, 1}, at::kLong);
  // Padded by wrapping round to 8, every second from the rank's own.
  EXPECT_EQ(values(shrink::shard_positions(order, 0, 2, true)), (std::vector<int64_t>{9, 7, 3, 1}));
  EXPECT_EQ(values(shrink::shard_positions(order, 1, 2, true)), (std::vector<int64_t>{4, 0, 8, 9}));
  // Unpadded: each position once.
  EXPECT_EQ(values(shrink::shard_positions(order, 1, 2, false)), (std::vector<int64_t>{4, 0, 8}));
  EXPECT_EQ(values(shrink::shard_positions(order, 2, 3, false)), (std::vector<int64_t>{7, 8}));
  // A set smaller than the world wraps round more than once.
  EXPECT_EQ(values(shrink::shard_positions(at::tensor({5, 6}, at::kLong), 4, 5, true)),
            (std::vector<int64_t>{5}));
  EXPECT_EQ(values(shrink::shard_positions(order, 0, 1, true)), values(order));
  // The ranks' i-th batches together are the i-th global batch.
  const at::Tensor big = at::randperm(64, at::kLong);
  for (int64_t b = 0; b < 2; ++b) {
    std::vector<int64_t> together;
    for (int r = 0; r < 2; ++r) {
      const auto mine = values(shrink::shard_positions(big, r, 2, true).narrow(0, 16 * b, 16));
      together.insert(together.end(), mine.begin(), mine.end());
    }
    std::sort(together.begin(), together.end());
    auto global = values(big.narrow(0, 32 * b, 32));
    std::sort(global.begin(), global.end());
    EXPECT_EQ(together, global);
  }
}

}  // namespace
