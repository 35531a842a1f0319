#include "dist/process_group.hpp"

#include <shrink/core/error.hpp>
#include <shrink/core/one_line_error.hpp>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <ATen/ATen.h>

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <vector>

namespace shrink {
namespace {

constexpr auto kBeat = std::chrono::milliseconds(500);
// How long a rank's heartbeat may stand still before it is said to have stopped.
constexpr auto kSilence = std::chrono::milliseconds(2500);

std::string beat_key(int rank) { return "shrink/beat/" + std::to_string(rank); }
std::string failure_key(int rank) { return "shrink/failed/" + std::to_string(rank); }

std::string text_of(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

// Gloo's words for a peer gone (its sockets: "Connection reset by peer", "Connection closed by
// peer", a read error) or silent ("Timed out", "Application timeout caused pair closure").
bool lost_peer(const std::exception& e) {
  std::string text = e.what();
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  for (const char* word : {"connection", "timed out", "timeout", "read error", "write error"}) {
    if (text.find(word) != std::string::npos) return true;
  }
  return false;
}

c10d::ReduceOp::RedOpType c10d_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kMin:
      return c10d::ReduceOp::MIN;
    case ReduceOp::kMax:
      return c10d::ReduceOp::MAX;
    default:  // Gloo has no AVG: a mean is a sum divided afterwards
      return c10d::ReduceOp::SUM;
  }
}

// Under torchrun's agent store, this run's keys go under the attempt's prefix, as PyTorch's.
c10::intrusive_ptr<c10d::Store> prefixed(c10::intrusive_ptr<c10d::Store> store,
                                         const WorldPlace& place) {
  if (place.agent_store_prefix.empty()) return store;
  return c10::make_intrusive<c10d::PrefixStore>(place.agent_store_prefix, std::move(store));
}

c10::intrusive_ptr<c10d::ProcessGroup> gloo_group(const c10::intrusive_ptr<c10d::Store>& store,
                                                  const WorldPlace& place,
                                                  std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  // As torch.distributed: GLOO_SOCKET_IFNAME picks the interface, else the host name's address.
  const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
  if (interface != nullptr && *interface != '\0') {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
  } else if (place.master_addr == "127.0.0.1" || place.master_addr == "localhost") {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  options->threads = 2;
  auto pg_store = c10::make_intrusive<c10d::PrefixStore>("shrink/gloo", store);
  return c10::make_intrusive<c10d::ProcessGroupGloo>(pg_store, place.rank, place.world, options);
}

// The store's client can wait far past its timeout when something else listens on MASTER_PORT
// (another service answers the connection and never replies). Joining has then written nothing,
// so past a deadline the process says so and ends; an exception cannot reach a thread that is
// blocked in a read.
class JoinDeadline {
 public:
  JoinDeadline(std::chrono::milliseconds limit, std::string line)
      : thread_([this, limit, line = std::move(line)] {
          std::unique_lock<std::mutex> lock(mutex_);
          if (wake_.wait_for(lock, limit, [this] { return done_; })) return;
          std::fprintf(stderr, "shrink: error: %s\n", line.c_str());
          std::_Exit(1);
        }) {}
  ~JoinDeadline() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  JoinDeadline(const JoinDeadline&) = delete;
  JoinDeadline& operator=(const JoinDeadline&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool done_ = false;
  std::thread thread_;  // last: it starts once the rest is there
};

// c10d's socket code logs every failed bind or connect attempt through glog (several lines, before
// glog is even set up) and then throws, and the throw becomes the one line this rank prints.
// While joining, glog keeps only fatal lines; LibTorch's glog is found at run time, so that
// nothing here links against it.
class QuietGlog {
 public:
  QuietGlog() : level_(static_cast<int*>(dlsym(RTLD_DEFAULT, "_ZN3fLI17FLAGS_minloglevelE"))) {
    if (level_ == nullptr) return;
    before_ = *level_;
    *level_ = 3;  // FATAL
  }
  ~QuietGlog() {
    if (level_ != nullptr) *level_ = before_;
  }
  QuietGlog(const QuietGlog&) = delete;
  QuietGlog& operator=(const QuietGlog&) = delete;

 private:
  int* level_;
  int before_ = 0;
};

}  // namespace

Communicator::Communicator() = default;

Communicator::~Communicator() = default;

void Communicator::check_backend(const std::string& backend) {
  // NCCL needs c10d's ProcessGroupNCCL, which exists only in a LibTorch built with CUDA; Debian's
  // has neither (docs/distributed.md#nccl).
  SHRINK_CHECK(backend == "gloo",
               "distributed.backend: " << backend
                                       << " needs a LibTorch built with CUDA and NCCL; this "
                                          "Shrink was built against one without CUDA (Debian's "
                                          "libtorch-dev): use gloo");
}

std::unique_ptr<Communicator> Communicator::join(const WorldPlace& place,
                                                 const DistOptions& options) {
  auto c = std::make_unique<Communicator>();
  c->rank_ = place.rank;
  c->world_ = place.world;
  if (!place.distributed()) return c;
  check_backend(options.backend);
  // A write to a lost rank's socket must fail (and be said), not kill this rank with SIGPIPE:
  // Python, which runs PyTorch's distributed training, ignores it the same way.
  std::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>();
  impl->rank = place.rank;
  impl->world = place.world;
  impl->timeout = options.timeout;
  impl->agent_store = !place.agent_store_prefix.empty();
  const std::string where = place.master_addr + ":" + std::to_string(place.master_port);
  const std::string cannot =
      "rank " + std::to_string(place.rank) + " of " + std::to_string(place.world) +
      ": could not join the process group at " + where + " (MASTER_ADDR:MASTER_PORT) within " +
      std::to_string(options.timeout.count() / 1000) + " s";
  JoinDeadline deadline(options.timeout + 2 * kSilence,
                        cannot +
                            ": no answer from the store there (is another program listening "
                            "on that port?)");
  QuietGlog quiet;
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(place.master_port);
    store_options.isServer = place.rank == 0 && place.agent_store_prefix.empty();
    store_options.numWorkers = static_cast<std::size_t>(place.world);
    store_options.waitWorkers = true;
    store_options.timeout = options.timeout;
    impl->store =
        prefixed(c10::make_intrusive<c10d::TCPStore>(place.master_addr, store_options), place);
    impl->group = gloo_group(impl->store, place, options.timeout);
    // Heartbeats and diagnoses on a connection of their own, which gives up in seconds: a frozen
    // rank 0 (the store's host) must not hold them for the whole timeout.
    c10d::TCPStoreOptions watch_options;
    watch_options.port = store_options.port;
    watch_options.waitWorkers = false;
    watch_options.timeout = kSilence;
    impl->watch =
        prefixed(c10::make_intrusive<c10d::TCPStore>(place.master_addr, watch_options), place);
  } catch (const std::exception& e) {
    const std::string why = e.what();
    throw Error(cannot + ": " + first_line(why.empty() ? "no reason given" : why));
  }
  impl->start_heartbeat();
  c->impl_ = std::move(impl);
  return c;
}

void Communicator::all_reduce(at::Tensor& tensor, ReduceOp op, const std::string& what) {
  if (!active()) return;
  // Gloo reads data_ptr and numel: a strided view is reduced as a dense copy, copied back.
  std::vector<at::Tensor> tensors{tensor.is_contiguous() ? tensor : tensor.contiguous()};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp(c10d_op(op));
  impl_->run(what, [&] { return impl_->group->allreduce(tensors, options); });
  if (!tensors[0].is_same(tensor)) tensor.copy_(tensors[0]);
  if (op == ReduceOp::kMean) tensor.div_(world_);
}

void Communicator::broadcast(std::vector<at::Tensor>& tensors, int root, const std::string& what) {
  if (!active() || tensors.empty()) return;
  // One flat message per dtype instead of a round trip per tensor.
  std::map<at::ScalarType, std::vector<at::Tensor*>> by_type;
  for (auto& t : tensors) {
    by_type[t.scalar_type() == at::kBool ? at::kByte : t.scalar_type()].push_back(&t);  // Gloo's
  }
  c10d::BroadcastOptions options;
  options.rootRank = root;
  for (auto& [type, group] : by_type) {
    std::vector<at::Tensor> parts;
    for (const at::Tensor* t : group) parts.push_back(t->reshape(-1).to(type));
    std::vector<at::Tensor> message{at::cat(parts)};
    impl_->run(what, [&] { return impl_->group->broadcast(message, options); });
    int64_t offset = 0;
    for (at::Tensor* t : group) {
      t->copy_(message[0].narrow(0, offset, t->numel()).view(t->sizes()));
      offset += t->numel();
    }
  }
}

void Communicator::check_same(const at::Tensor& values, const std::vector<std::string>& names,
                              const std::string& what, const std::string& why) {
  if (!active() || values.numel() == 0) return;
  // Bit patterns, not values (a NaN agrees with itself), max of both signs in one all-reduce:
  // equal everywhere when max(v) == -max(-v).
  const at::Tensor bits = values.to(at::kDouble).contiguous().view(at::kLong);
  at::Tensor both = at::cat({bits, -bits});
  all_reduce(both, ReduceOp::kMax, what);
  const int64_t n = bits.numel();
  const at::Tensor differ = both.narrow(0, 0, n).ne(-both.narrow(0, n, n)).nonzero();
  if (differ.numel() == 0) return;
  const int64_t first = differ[0][0].item<int64_t>();
  throw SameOnEveryRank(what + ": " + names.at(static_cast<std::size_t>(first)) +
                        " differs between ranks (" + why + ")");
}

bool Communicator::lost_peer(const std::exception& e) const {
  return impl_ && shrink::lost_peer(e);
}

void Communicator::fail(const std::string& what, const std::exception& e) { impl_->fail(what, e); }

void Communicator::abandon(const std::string& message) noexcept {
  if (!impl_ || !impl_->group) return;
  try {
    impl_->watch->set(failure_key(rank_), std::vector<uint8_t>(message.begin(), message.end()));
    impl_->group.reset();  // the others' collectives with this rank fail now, not at a timeout
    // The store's host lingers a moment, for the others to read this.
    if (rank_ == 0 && !impl_->agent_store) std::this_thread::sleep_for(kSilence + kBeat);
  } catch (...) {  // the store is gone too: the others will say so
  }
}

Communicator::Impl::~Impl() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  wake.notify_all();
  if (heartbeat.joinable()) heartbeat.join();
}

void Communicator::Impl::start_heartbeat() {
  heartbeat = std::thread([this] {
    for (int64_t beats = 1;; ++beats) {
      const std::string value = std::to_string(beats) + " " + std::to_string(collectives.load());
      try {
        watch->set(beat_key(rank), std::vector<uint8_t>(value.begin(), value.end()));
      } catch (...) {  // the store's host is gone or frozen; a collective will fail and say so
      }
      std::unique_lock<std::mutex> lock(mutex);
      if (wake.wait_for(lock, kBeat, [this] { return stopping; })) return;
    }
  });
}

void Communicator::Impl::run(const std::string& what,
                             const std::function<c10::intrusive_ptr<c10d::Work>()>& collective) {
  SHRINK_CHECK(group, "rank " << rank << ": " << what << ": this rank has left the group");
  ++collectives;
  try {
    collective()->wait(timeout);
  } catch (const std::exception& e) {
    if (shrink::lost_peer(e)) fail(what, e);
    throw_one_line("rank " + std::to_string(rank) + ": " + what + ": " + first_line(e.what()));
  }
}

void Communicator::Impl::fail(const std::string& what, const std::exception& e) {
  std::ostringstream line;
  line << "rank " << rank << ": " << what << ": lost the other ranks: " << diagnose() << " ("
       << first_line(e.what()) << ")";
  // Recorded: inside a forward (synchronized BatchNorm) the interpreter wraps what is thrown.
  throw_one_line(line.str());
}

// Which rank is at fault, from the store: one that left a message, one whose heartbeat stopped,
// or the one furthest behind in collectives.
std::string Communicator::Impl::diagnose() {
  // The value a rank left under `key`; "" when none.
  const auto read = [this](const std::string& key) {
    return watch->check({key}) ? text_of(watch->get(key)) : std::string();
  };
  // The first other rank's last words; "" when none left any.
  const auto failed = [&] {
    for (int r = 0; r < world; ++r) {
      const std::string line = r == rank ? "" : read(failure_key(r));
      if (!line.empty()) return "rank " + std::to_string(r) + " failed: " + line;
    }
    return std::string();
  };
  try {
    if (std::string f = failed(); !f.empty()) return f;
    std::vector<std::string> before(static_cast<std::size_t>(world));
    for (int r = 0; r < world; ++r) {
      if (r != rank) before[r] = read(beat_key(r));
    }
    std::this_thread::sleep_for(kSilence);
    if (std::string f = failed(); !f.empty()) return f;
    int64_t least = collectives.load();
    int behind = -1;
    for (int r = 0; r < world; ++r) {
      if (r == rank) continue;
      const std::string now = read(beat_key(r));
      if (now == before[r]) {
        return "rank " + std::to_string(r) + " stopped (killed, or frozen: no heartbeat for " +
               std::to_string(kSilence.count() / 1000.0).substr(0, 3) + " s)";
      }
      const int64_t done = std::stoll(now.substr(now.find(' ') + 1));
      if (done < least) least = done, behind = r;
    }
    if (behind >= 0) {
      return "rank " + std::to_string(behind) + " is alive but behind (hung, or much slower), " +
             "nothing heard within the timeout of " + std::to_string(timeout.count() / 1000) + " s";
    }
    return "every rank is alive; nothing heard within the timeout of " +
           std::to_string(timeout.count() / 1000) + " s";
  } catch (const std::exception&) {
    return rank == 0 || agent_store
               ? "the store stopped answering"
               : "rank 0 stopped (killed, or failed: the store it hosts is gone)";
  }
}

double checksum(const at::Tensor& t) {
  const at::Tensor v = t.detach().to(at::kDouble).reshape(-1);
  return (v * at::arange(1, v.numel() + 1, v.options())).sum().item<double>();
}

namespace {
Communicator*& current_slot() {
  static Communicator* current = nullptr;
  return current;
}
}  // namespace

Communicator& current_communicator() {
  static Communicator alone;
  return current_slot() != nullptr ? *current_slot() : alone;
}

void set_current_communicator(Communicator* communicator) { current_slot() = communicator; }

}  // namespace shrink
