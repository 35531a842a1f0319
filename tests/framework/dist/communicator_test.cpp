// Two real processes on 127.0.0.1 (this test binary started again as rank 1): c10d's TCPStore and
// Gloo through the Communicator, the gradient reducer against the mean of both ranks' gradients,
// synchronized BatchNorm against one process on the whole batch, and a lost rank named.
#include <shrink/dist/communicator.hpp>
#include <shrink/dist/gradient_reducer.hpp>
#include <shrink/graph/sync_batch_norm.hpp>

#include "test_paths.hpp"
#include "test_support.hpp"

#include <torch/script.h>
#include <torch/torch.h>

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

constexpr const char* kScenario = "SHRINK_TEST_DIST_SCENARIO";

shrink::WorldPlace place(int rank, int port) {
  shrink::WorldPlace p;
  p.rank = rank;
  p.world = 2;
  p.master_port = port;
  p.launcher = "test";
  return p;
}

std::unique_ptr<shrink::Communicator> join(int rank, int port, int timeout_s = 30) {
  shrink::DistOptions options;
  options.timeout = std::chrono::seconds(timeout_s);
  return shrink::Communicator::join(place(rank, port), options);
}

// --- the scenarios, run by both ranks ------------------------------------------------------------

void collectives(shrink::Communicator& c) {
  const double r = c.rank() + 1;
  for (auto [op, want] : std::vector<std::pair<shrink::ReduceOp, std::vector<double>>>{
           {shrink::ReduceOp::kSum, {3, 30}},
           {shrink::ReduceOp::kMin, {1, 10}},
           {shrink::ReduceOp::kMax, {2, 20}},
           {shrink::ReduceOp::kMean, {1.5, 15}}}) {
    at::Tensor t = at::tensor({r, 10 * r}, at::kDouble);
    c.all_reduce(t, op, "test");
    EXPECT_EQ(t[0].item<double>(), want[0]);
    EXPECT_EQ(t[1].item<double>(), want[1]);
  }
  std::vector<at::Tensor> tensors{at::full({2, 2}, r, at::kFloat), at::full({3}, 7 * r, at::kLong),
                                  at::full({1}, c.rank() == 0, at::kBool)};
  c.broadcast(tensors, 0, "test");
  EXPECT_TRUE(tensors[0].equal(at::full({2, 2}, 1.0, at::kFloat)));
  EXPECT_TRUE(tensors[1].equal(at::full({3}, 7, at::kLong)));
  EXPECT_TRUE(tensors[2].item<bool>());
  EXPECT_NO_THROW(c.check_same(at::tensor({1.0, 2.0}), {"a", "b"}, "same"));
  const std::string error = shrink::test::error_of([&] {
    c.check_same(at::tensor({1.0, 2.0 + c.rank(), 3.0 - c.rank()}), {"a", "b", "c"}, "epoch 1");
  });
  EXPECT_EQ(error.substr(0, error.rfind(" (")), "epoch 1: b differs between ranks");
  // While a Local scope lives, nothing reaches the other rank.
  shrink::Communicator::Local alone(c);
  at::Tensor t = at::tensor({r});
  c.all_reduce(t, shrink::ReduceOp::kSum, "test");
  EXPECT_EQ(t.item<double>(), r);
}

// Two steps of a small net on each rank's own data: the reducer's gradients are the mean of both
// ranks' (each rank can compute the other's, the data being a function of the rank).
void reducer(shrink::Communicator& c) {
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(6, 5), torch::nn::ReLU(), torch::nn::Linear(5, 3));
  auto data = [](int rank, int step) {
    torch::manual_seed(100 + 10 * rank + step);
    return std::make_pair(torch::randn({8, 6}), torch::randint(0, 3, {8}));
  };
  auto grads_on = [&](int rank, int step) {
    auto copy = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(net->clone());
    const auto [x, y] = data(rank, step);
    torch::cross_entropy_loss(copy->forward(x), y).backward();
    std::vector<at::Tensor> g;
    for (const auto& p : copy->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  shrink::GradientReducer reducer(c, net->parameters(), {});
  for (int step = 0; step < 2; ++step) {
    const auto g0 = grads_on(0, step), g1 = grads_on(1, step);
    for (auto& p : net->parameters()) p.mutable_grad() = at::Tensor();
    reducer.before_forward();
    const auto [x, y] = data(c.rank(), step);
    const at::Tensor loss = torch::cross_entropy_loss(net->forward(x), y);
    reducer.before_backward(loss);
    loss.backward();
    const auto params = net->parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
      EXPECT_TRUE(params[i].grad().allclose((g0[i] + g1[i]) / 2, 1e-6, 1e-7)) << "param " << i;
    }
  }
}

// The quick start's net (a BatchNorm after conv1) on 8 samples: rank r takes samples r, r+2, ...
// With synchronized BatchNorm its outputs are the whole batch's rows, and the averaged gradients
// the whole batch's.
void sync_batch_norm(shrink::Communicator& c) {
  shrink::set_current_communicator(&c);  // what the BatchNorm op all-reduces over, as in a run
  torch::jit::Module whole =
      torch::jit::load(std::string(shrink::test::kTestModelDir) + "/mnist.pt");
  torch::jit::Module mine =
      torch::jit::load(std::string(shrink::test::kTestModelDir) + "/mnist.pt");
  torch::manual_seed(5);
  const at::Tensor x = torch::randn({8, 1, 28, 28}), y = torch::randint(0, 10, {8});
  const at::Tensor rows = at::arange(c.rank(), 8, 2);
  whole.train();
  const at::Tensor out_whole = whole.forward({x}).toTensor();
  torch::nll_loss(out_whole, y).backward();
  int rewritten = 0;
  torch::jit::Module synced = shrink::with_sync_batch_norm(mine, &rewritten);
  EXPECT_EQ(rewritten, 1);
  synced.train();
  std::vector<at::Tensor> params;
  for (const auto& p : mine.parameters()) params.push_back(p);
  shrink::GradientReducer reducer(c, params, {});
  reducer.before_forward();
  const at::Tensor out = synced.forward({x.index_select(0, rows)}).toTensor();
  EXPECT_TRUE(out.allclose(out_whole.index_select(0, rows), 1e-5, 1e-5))
      << (out - out_whole.index_select(0, rows)).abs().max().item<double>();
  const at::Tensor loss = torch::nll_loss(out, y.index_select(0, rows));
  reducer.before_backward(loss);
  loss.backward();
  std::map<std::string, at::Tensor> expected, buffers;
  for (const auto& p : whole.named_parameters()) expected[p.name] = p.value.grad();
  for (const auto& b : whole.named_buffers()) buffers[b.name] = b.value;
  for (const auto& p : mine.named_parameters()) {
    const at::Tensor want = expected[p.name];
    EXPECT_TRUE(p.value.grad().allclose(want, 1e-4, 1e-6)) << p.name;
  }
  for (const auto& b : mine.named_buffers()) {
    EXPECT_TRUE(b.value.to(at::kDouble).allclose(buffers[b.name].to(at::kDouble), 1e-5, 1e-6))
        << b.name;
  }
  shrink::set_current_communicator(nullptr);
}

// Runs `scenario` as rank 0 here and as rank 1 in a second process; true when rank 1 passed.
template <typename Scenario>
bool on_two_ranks(const std::string& name, Scenario&& scenario) {
  const int port = shrink::free_local_port();
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string filter = "--gtest_filter=DistributedWorker.Rank1";
    const std::string env_scenario = std::string(kScenario) + "=" + name;
    const std::string env_port = "SHRINK_TEST_DIST_PORT=" + std::to_string(port);
    std::vector<std::string> env{env_scenario, env_port};
    for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
    std::vector<char*> envp;
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    char* argv[] = {const_cast<char*>("shrink_tests"), const_cast<char*>(filter.c_str()), nullptr};
    execve("/proc/self/exe", argv, envp.data());
    _exit(127);
  }
  scenario(port);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST(Communicator, CollectivesOnTwoRanks) {
  EXPECT_TRUE(on_two_ranks("collectives", [](int port) { collectives(*join(0, port)); }));
}

TEST(Communicator, ReducerAveragesGradients) {
  EXPECT_TRUE(on_two_ranks("reducer", [](int port) { reducer(*join(0, port)); }));
}

TEST(Communicator, SyncBatchNormIsTheWholeBatchs) {
  EXPECT_TRUE(on_two_ranks("sync_batch_norm", [](int port) { sync_batch_norm(*join(0, port)); }));
}

TEST(Communicator, AFailingRankIsNamedWithItsMessage) {
  EXPECT_TRUE(on_two_ranks("abandon", [](int port) {
    auto c = join(0, port);
    at::Tensor t = at::ones({1});
    const std::string error =
        shrink::test::error_of([&] { c->all_reduce(t, shrink::ReduceOp::kSum, "step 3"); });
    EXPECT_EQ(error.substr(0, error.rfind(" (")),
              "rank 0: step 3: lost the other ranks: rank 1 failed: rank 1: data: bad image");
  }));
}

TEST(Communicator, ADeadRankIsNamed) {
  on_two_ranks("die", [](int port) {
    auto c = join(0, port);
    at::Tensor t = at::ones({1});
    const std::string error =
        shrink::test::error_of([&] { c->all_reduce(t, shrink::ReduceOp::kSum, "step 3"); });
    EXPECT_EQ(error.substr(0, error.rfind(" (")),
              "rank 0: step 3: lost the other ranks: rank 1 stopped (killed, or frozen: no "
              "heartbeat for 2.5 s)")
        << error;
  });
}

TEST(Communicator, ARankThatNeverComesIsAnErrorWithinTheTimeout) {
  const std::string error = shrink::test::error_of([] { join(0, shrink::free_local_port(), 2); });
  EXPECT_NE(error.find("rank 0 of 2: could not join the process group at 127.0.0.1:"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("within 2 s"), std::string::npos) << error;
}

TEST(Communicator, AloneEveryCallIsANoOp) {
  shrink::Communicator alone;
  EXPECT_FALSE(alone.active());
  at::Tensor t = at::tensor({2.0});
  alone.all_reduce(t, shrink::ReduceOp::kMean, "test");
  EXPECT_EQ(t.item<double>(), 2.0);
  EXPECT_NO_THROW(alone.check_same(at::tensor({1.0}), {"a"}, "test"));
}

// Rank 1 of the tests above: started by on_two_ranks with the scenario in the environment.
TEST(DistributedWorker, Rank1) {
  const char* scenario = std::getenv(kScenario);
  if (scenario == nullptr) GTEST_SKIP() << "rank 1 of the Communicator tests, started by them";
  const int port = std::atoi(std::getenv("SHRINK_TEST_DIST_PORT"));
  const std::string name = scenario;
  auto c = join(1, port);
  if (name == "collectives") collectives(*c);
  if (name == "reducer") reducer(*c);
  if (name == "sync_batch_norm") sync_batch_norm(*c);
  if (name == "abandon") c->abandon("rank 1: data: bad image");
  if (name == "die") {
    std::this_thread::sleep_for(std::chrono::seconds(1));  // a heartbeat or two
    _exit(3);
  }
}

}  // namespace
