#include "dist/process_group.hpp"

#include <shrink/core/error.hpp>
#include <shrink/core/one_line_error.hpp>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
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

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

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
  auto impl = std::make_unique<Impl>();
  impl->rank = place.rank;
  impl->world = place.world;
  impl->timeout = options.timeout;
  const std::string where = place.master_addr + ":" + std::to_string(place.master_port);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(place.master_port);
    store_options.isServer = place.rank == 0;
    store_options.numWorkers = static_cast<std::size_t>(place.world);
    store_options.waitWorkers = true;
    store_options.timeout = options.timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(place.master_addr, store_options);
    impl->group = gloo_group(impl->store, place, options.timeout);
  } catch (const std::exception& e) {
    const std::string why = e.what();
    throw Error("rank " + std::to_string(place.rank) + " of " + std::to_string(place.world) +
                ": could not join the process group at " + where +
                " (MASTER_ADDR:MASTER_PORT) within " +
                std::to_string(options.timeout.count() / 1000) +
                " s: " + first_line(why.empty() ? "no reason given" : why));
  }
  impl->start_heartbeat();
  c->impl_ = std::move(impl);
  return c;
}

void Communicator::all_reduce(at::Tensor& tensor, ReduceOp op, const std::string& what) {
  if (!active()) return;
  SHRINK_CHECK(impl_->group, "rank " << rank_ << ": " << what << ": this rank has left the group");
  std::vector<at::Tensor> tensors{tensor};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp(c10d_op(op));
  impl_->run(what, [&] { return impl_->group->allreduce(tensors, options); });
  if (op == ReduceOp::kMean) tensor.div_(world_);
}

void Communicator::broadcast(std::vector<at::Tensor>& tensors, int root, const std::string& what) {
  if (!active() || tensors.empty()) return;
  SHRINK_CHECK(impl_->group, "rank " << rank_ << ": " << what << ": this rank has left the group");
  // One flat message instead of a round trip per tensor (float64 holds every value exactly).
  std::vector<at::Tensor> parts;
  for (const auto& t : tensors) parts.push_back(t.reshape(-1).to(at::kDouble));
  std::vector<at::Tensor> message{at::cat(parts)};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  impl_->run(what, [&] { return impl_->group->broadcast(message, options); });
  int64_t offset = 0;
  for (auto& t : tensors) {
    const int64_t n = t.numel();
    t.copy_(message[0].narrow(0, offset, n).view(t.sizes()));
    offset += n;
  }
}

void Communicator::check_same(const at::Tensor& values, const std::vector<std::string>& names,
                              const std::string& what) {
  if (!active() || values.numel() == 0) return;
  at::Tensor low = values.to(at::kDouble).clone();
  at::Tensor high = low.clone();
  all_reduce(low, ReduceOp::kMin, what);
  all_reduce(high, ReduceOp::kMax, what);
  const at::Tensor differ = low.ne(high).nonzero();
  if (differ.numel() == 0) return;
  const int64_t first = differ[0][0].item<int64_t>();
  throw SameOnEveryRank(
      what + ": " + names.at(static_cast<std::size_t>(first)) +
      " differs between ranks (a plugin that keeps statistics of its own data must "
      "combine them with the host's all_reduce: docs/distributed.md#plugins)");
}

bool Communicator::lost_peer(const std::exception& e) const {
  if (!impl_) return false;
  std::string text = e.what();
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return text.find("gloo") != std::string::npos || text.find("connection") != std::string::npos;
}

void Communicator::fail(const std::string& what, const std::exception& e) { impl_->fail(what, e); }

void Communicator::abandon(const std::string& message) noexcept {
  if (!impl_ || !impl_->group) return;
  try {
    impl_->store->set(failure_key(rank_), std::vector<uint8_t>(message.begin(), message.end()));
    impl_->group.reset();  // the others' collectives with this rank fail now, not at a timeout
    if (rank_ == 0) std::this_thread::sleep_for(kSilence + kBeat);
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
    int64_t beats = 0;
    std::unique_lock<std::mutex> lock(mutex);
    while (!stopping) {
      const std::string value = std::to_string(++beats) + " " + std::to_string(collectives.load());
      try {
        store->set(beat_key(rank), std::vector<uint8_t>(value.begin(), value.end()));
      } catch (...) {  // the store's host is gone; a collective will fail and say so
        return;
      }
      wake.wait_for(lock, kBeat, [this] { return stopping; });
    }
  });
}

void Communicator::Impl::run(const std::string& what,
                             const std::function<c10::intrusive_ptr<c10d::Work>()>& collective) {
  ++collectives;
  try {
    collective()->wait(timeout);
  } catch (const std::exception& e) {
    fail(what, e);
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
  try {
    std::vector<std::string> before(static_cast<std::size_t>(world));
    for (int r = 0; r < world; ++r) {
      if (r == rank) continue;
      if (store->check({failure_key(r)})) {
        return "rank " + std::to_string(r) + " failed: " + text_of(store->get(failure_key(r)));
      }
      if (store->check({beat_key(r)})) before[r] = text_of(store->get(beat_key(r)));
    }
    std::this_thread::sleep_for(kSilence);
    int64_t least = collectives.load();
    int behind = -1;
    for (int r = 0; r < world; ++r) {
      if (r == rank) continue;
      if (store->check({failure_key(r)})) {
        return "rank " + std::to_string(r) + " failed: " + text_of(store->get(failure_key(r)));
      }
      const std::string now = store->check({beat_key(r)}) ? text_of(store->get(beat_key(r))) : "";
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
    return rank == 0 ? "the store stopped answering"
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
