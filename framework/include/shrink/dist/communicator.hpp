// The processes of one distributed run, talking through LibTorch's c10d: a TCPStore that rank 0
// hosts (the rendezvous, heartbeats, the last words of a rank that failed) and a Gloo process
// group for the collectives. Alone (world 1) every collective is a no-op, so the code that trains
// calls them unconditionally.
//
// A collective that fails (a peer's connection closed, or nothing heard within the timeout) is a
// shrink::Error naming the rank at fault and what it was doing, read from the store: the message
// it left when it failed, or that its heartbeat stopped, or that it is behind.
#pragma once

#include <shrink/core/error.hpp>
#include <shrink/dist/world.hpp>

#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace shrink {

enum class ReduceOp { kSum, kMin, kMax, kMean };

// A failure every rank finds at once (check_same): only rank 0 need say it.
class SameOnEveryRank : public Error {
 public:
  using Error::Error;
};

struct DistOptions {
  std::string backend = "gloo";  // "gloo"; "nccl" needs a LibTorch built with CUDA
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

// What check_same's line says by default: the usual cause of state that differs between ranks.
inline const std::string kPluginStatistics =
    "a plugin that keeps statistics of its own data must combine them with the host's "
    "all_reduce: docs/distributed.md#plugins";

class Communicator {
 public:
  struct Impl;

  // One process, alone.
  Communicator();
  // A shrink::Error when this build cannot run `backend` (checked before anyone waits).
  static void check_backend(const std::string& backend);
  // Joins the run's process group: every rank must call it within options.timeout.
  static std::unique_ptr<Communicator> join(const WorldPlace& place, const DistOptions& options);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int world() const { return world_; }
  // True when collectives reach other processes: more than one rank, and no Local scope open.
  bool active() const { return world_ > 1 && local_ == 0; }

  // In place over every rank: sum, min, max or mean (float tensors) of `tensor`. `what` names the
  // call in an error ("the epoch's totals").
  void all_reduce(at::Tensor& tensor, ReduceOp op, const std::string& what);
  // Rank `root`'s values into every rank's tensors (same shapes on every rank).
  void broadcast(std::vector<at::Tensor>& tensors, int root, const std::string& what);
  // Fails with one line naming the first of `names` whose value differs between ranks; `values`
  // holds one checksum per name (float64, the same order on every rank).
  void check_same(const at::Tensor& values, const std::vector<std::string>& names,
                  const std::string& what, const std::string& why = kPluginStatistics);

  // True when `e`, thrown by something that ran collectives inside (the gradient reducer in a
  // backward), is a lost peer; fail() then names the rank at fault.
  bool lost_peer(const std::exception& e) const;
  [[noreturn]] void fail(const std::string& what, const std::exception& e);

  // This rank is failing with `message`: it leaves the message in the store and leaves the
  // group, so that the others, losing it at once, name it and its message. Rank 0, which hosts
  // the store, lingers a moment for them to read it.
  void abandon(const std::string& message) noexcept;

  // While one lives, collectives are no-ops: work only rank 0 does (exports, the report).
  class Local {
   public:
    explicit Local(Communicator& c) : c_(c) { ++c_.local_; }
    ~Local() { --c_.local_; }
    Local(const Local&) = delete;
    Local& operator=(const Local&) = delete;

   private:
    Communicator& c_;
  };

  Impl& impl() { return *impl_; }  // dist/ internals (process_group.hpp)

 private:
  int rank_ = 0;
  int world_ = 1;
  int local_ = 0;
  std::unique_ptr<Impl> impl_;
};

// A checksum of `t`'s values and their places (sum of value x position), for check_same: equal
// tensors give equal sums on every rank, and a change anywhere changes it.
double checksum(const at::Tensor& t);

// The communicator of the run in progress, for the host API's collectives (plugins); a lone one
// when no run has set it. Set by run_experiment for the life of the run.
Communicator& current_communicator();
void set_current_communicator(Communicator* communicator);

}  // namespace shrink
