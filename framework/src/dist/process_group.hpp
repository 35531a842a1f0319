// What a joined Communicator holds (communicator.hpp): the store, the process group and the
// heartbeat thread. Private to dist/: only the gradient reducer needs the process group itself.
#pragma once

#include <shrink/dist/communicator.hpp>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace shrink {

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;  // the rendezvous and Gloo's, with the run's timeout
  c10::intrusive_ptr<c10d::Store> watch;  // heartbeats, last words, diagnoses: a short timeout
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  std::chrono::milliseconds timeout{0};
  int rank = 0;
  int world = 1;
  bool agent_store = false;             // torchrun's agent hosts the store, not rank 0
  std::atomic<int64_t> collectives{0};  // calls begun, in the heartbeat: who is behind
  std::thread heartbeat;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;

  ~Impl();
  void start_heartbeat();
  // Runs one collective and waits for it; a failure becomes a shrink::Error naming the rank at
  // fault (diagnose()).
  void run(const std::string& what,
           const std::function<c10::intrusive_ptr<c10d::Work>()>& collective);
  std::string diagnose();
  [[noreturn]] void fail(const std::string& what, const std::exception& e);
};

}  // namespace shrink
