#include <shrink/core/error.hpp>
#include <shrink/data/loader.hpp>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <dlfcn.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

namespace shrink {
namespace {

uint64_t split_seed(uint64_t seed, bool train) { return SampleRng::seed_of(seed, -1, train); }

// A seeded random subset of `limit` of `n` samples, in index order.
std::vector<int64_t> random_subset(int64_t n, int64_t limit, uint64_t seed) {
  if (limit <= 0 || limit >= n) return {};
  at::Generator generator = at::detail::createCPUGenerator(seed);
  const at::Tensor chosen =
      std::get<0>(
          at::randperm(n, generator, at::TensorOptions(at::kLong)).narrow(0, 0, limit).sort())
          .contiguous();
  const int64_t* p = chosen.data_ptr<int64_t>();
  return std::vector<int64_t>(p, p + limit);
}

std::string shape_text(c10::IntArrayRef shape) { return c10::str(shape); }

void check_label(const DataSplit& split, int64_t index, int64_t label) {
  const int64_t classes = split.classes();
  if (label >= 0 && (classes == 0 || label < classes)) return;
  throw Error(split.source().name(index) + ": label " + std::to_string(label) +
              (classes > 0 ? " is outside [0, " + std::to_string(classes) + "), the model's " +
                                 std::to_string(classes) + " classes"
                           : " is negative"));
}

// Sample `index` through the per-sample part of the transforms (Pipeline::apply_each), or an
// undefined tensor when it is bad and the split skips those.
at::Tensor prepare(const DataSplit& split, int64_t index, bool augment, int64_t epoch,
                   int64_t& label) {
  Sample s;
  try {
    s = split.source().get(index);
  } catch (const BadSample&) {
    if (!split.skips_bad_samples()) throw;
    split.count_skipped(index);
    return {};
  }
  label = s.label;
  check_label(split, index, label);
  try {
    return split.pipeline(augment).apply_each(
        s.input, SampleRng::seed_of(split.seed(), augment ? epoch : -2, index));
  } catch (const Error& e) {
    throw Error(split.source().name(index) + ": " + e.what());
  }
}

void check_shape(const DataSplit& split, int64_t index, const at::Tensor& x, bool augment) {
  const std::vector<int64_t>& first = split.each_shape(augment);
  if (x.sizes() == c10::IntArrayRef(first)) return;
  throw Error(split.first_name() + " is " + shape_text(first) + " and " +
              split.source().name(index) + " is " + shape_text(x.sizes()) +
              (x.size(0) != first[0]
                   ? " once prepared: gray and colour images? to_channels in data.transforms "
                     "makes them one"
                   : " once prepared: samples of different sizes need a resize or a crop in "
                     "data.transforms"));
}

// Floating-point sources can hold NaN or infinity; a batch holding them names its first bad one.
void check_finite(const DataSplit& split, const at::Tensor& x, const std::vector<int64_t>& kept) {
  const at::Tensor finite = at::isfinite(x).flatten(1).all(1);
  if (finite.all().item<bool>()) return;
  const int64_t row = (~finite).nonzero()[0][0].item<int64_t>();
  throw Error(split.source().name(kept[static_cast<std::size_t>(row)]) +
              ": the input contains NaN or infinity");
}

void use_one_openmp_thread() {
  // Each worker prepares one sample at a time; LibTorch's OpenMP team would fight the training
  // step for the cores. The setting is per thread.
  using SetThreads = void (*)(int);
  if (auto* set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"))) {
    set(1);
  }
}

}  // namespace

int64_t automatic_workers(bool decodes, int64_t training_threads, int64_t ranks_here) {
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t share = cores / std::max<int64_t>(1, ranks_here);
  return decodes ? std::clamp<int64_t>(share - training_threads, 0, 8) : 0;
}

struct DataSplit::Skipped {
  mutable std::mutex mutex;
  std::set<int64_t> indices;
};

DataSplit::DataSplit(std::shared_ptr<const Source> source, const DataOptions& o, bool train,
                     uint64_t seed, int64_t training_threads, int64_t ranks_here)
    : source_(std::move(source)),
      train_(train ? o.train_transforms : o.test_transforms),
      eval_(o.test_transforms),
      seed_(seed),
      skip_(o.on_bad_sample == "skip"),
      skipped_(std::make_shared<Skipped>()) {
  subset_seed_ = split_seed(seed, train);
  subset_ = random_subset(source_->size(), train ? o.train_limit : o.test_limit, subset_seed_);
  size_ = subset_.empty() ? source_->size() : static_cast<int64_t>(subset_.size());
  const int64_t threads = training_threads > 0 ? training_threads : at::get_num_threads();
  workers_ =
      o.workers >= 0 ? o.workers : automatic_workers(source_->decodes(), threads, ranks_here);
  prefetch_ = o.prefetch > 0 ? o.prefetch : std::max<int64_t>(2, 2 * workers_);
  SHRINK_CHECK(size_ > 0, (train ? "the training" : "the evaluation") << " data hold no samples");
  // The first readable sample fixes the shape every other must have.
  for (int64_t p = 0; p < size_ && shape_.empty(); ++p) {
    const int64_t index = sample_index(p);
    int64_t label = 0;
    const at::Tensor x_each = prepare(*this, index, true, 0, label);
    if (!x_each.defined()) continue;
    const at::Tensor y_each = prepare(*this, index, false, 0, label);
    at::Tensor x, y;
    try {
      x = train_.apply_batch(x_each.unsqueeze(0)).squeeze(0);
      y = eval_.apply_batch(y_each.unsqueeze(0)).squeeze(0);
    } catch (const Error& e) {
      throw Error(source_->name(index) + ": " + e.what());
    }
    SHRINK_CHECK(x.sizes() == y.sizes(), source_->name(index)
                                             << ": the training transforms make it " << x.sizes()
                                             << ", the evaluation ones " << y.sizes()
                                             << "; the model takes samples of one size");
    shape_ = x.sizes().vec();
    each_shape_[1] = x_each.sizes().vec();
    each_shape_[0] = y_each.sizes().vec();
    first_name_ = source_->name(index);
  }
  SHRINK_CHECK(!shape_.empty(), "every sample of the " << (train ? "training" : "evaluation")
                                                       << " data is unreadable");
}

int64_t DataSplit::skipped() const {
  if (!skipped_) return 0;
  std::lock_guard<std::mutex> lock(skipped_->mutex);
  return static_cast<int64_t>(skipped_->indices.size());
}

std::string DataSplit::first_skipped() const {
  if (!skipped_) return "";
  std::lock_guard<std::mutex> lock(skipped_->mutex);
  return skipped_->indices.empty() ? "" : source_->name(*skipped_->indices.begin());
}

void DataSplit::count_skipped(int64_t index) const {
  std::lock_guard<std::mutex> lock(skipped_->mutex);
  skipped_->indices.insert(index);
}

void DataSplit::check_labels(int64_t classes) {
  classes_ = classes;
  at::Tensor labels = source_->labels();
  if (!labels.defined()) return;  // checked as each sample is read
  if (!subset_.empty()) labels = labels.index_select(0, at::tensor(subset_, at::kLong));
  at::Tensor bad = labels.lt(0);
  if (classes > 0) bad = bad.logical_or(labels.ge(classes));
  if (!bad.any().item<bool>()) return;
  const int64_t p = bad.nonzero()[0][0].item<int64_t>();
  check_label(*this, sample_index(p), labels[p].item<int64_t>());
}

at::Tensor DataSplit::order(int64_t epoch) const {
  at::Generator generator = at::detail::createCPUGenerator(SampleRng::seed_of(seed_, epoch, -3));
  // int32 while it fits: an epoch's order is the loader's one cost that grows with the data.
  const bool fits = size_ <= std::numeric_limits<int32_t>::max();
  return at::randperm(size_, generator, at::TensorOptions(fits ? at::kInt : at::kLong));
}

Batch read_batch(const DataSplit& split, const at::Tensor& positions, bool augment, int64_t epoch) {
  at::NoGradGuard no_grad;
  const at::Tensor p = positions.to(at::kLong).contiguous();
  const int64_t n = p.numel();
  std::vector<at::Tensor> samples;
  std::vector<int64_t> labels, kept;
  bool bytes = true;  // every sample still uint8: stacked as bytes, scaled once for the batch
  for (int64_t j = 0; j < n; ++j) {
    const int64_t index = split.sample_index(p.data_ptr<int64_t>()[j]);
    int64_t label = 0;
    const at::Tensor x = prepare(split, index, augment, epoch, label);
    if (!x.defined()) continue;
    check_shape(split, index, x, augment);
    bytes = bytes && x.scalar_type() == at::kByte;
    samples.push_back(x);
    labels.push_back(label);
    kept.push_back(index);
  }
  if (!bytes) {
    for (at::Tensor& x : samples) x = transforms::to_float(x);
  }
  Batch b;
  if (samples.empty()) {
    std::vector<int64_t> shape = {0};
    shape.insert(shape.end(), split.shape().begin(), split.shape().end());
    b.inputs = at::empty(shape, at::kFloat);
  } else {
    b.inputs = split.pipeline(augment).apply_batch(at::stack(samples)).contiguous();
  }
  b.targets = at::tensor(labels, at::kLong);
  check_finite(split, b.inputs, kept);
  return b;
}

struct Loader::State {
  const DataSplit* split = nullptr;
  at::Tensor positions;
  int64_t batch_size = 1, count = 0, epoch = 0, capacity = 2;
  bool augment = false;
  std::mutex mutex;
  std::condition_variable produced, taken;
  int64_t next_claim = 0, next_give = 0;
  bool stop = false;
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };
  std::map<int64_t, Slot> ready;
  std::vector<std::thread> threads;

  Batch make(int64_t k) const {
    const int64_t start = k * batch_size;
    const int64_t n = std::min(batch_size, positions.size(0) - start);
    return read_batch(*split, positions.narrow(0, start, n), augment, epoch);
  }

  void work() {
    use_one_openmp_thread();
    // Per thread, as the run sets it on the main one: the same batches for any worker count.
    at::globalContext().setFlushDenormal(true);
    for (;;) {
      int64_t k = 0;
      {
        std::unique_lock<std::mutex> lock(mutex);
        taken.wait(
            lock, [&] { return stop || next_claim >= count || next_claim < next_give + capacity; });
        if (stop || next_claim >= count) return;
        k = next_claim++;
      }
      Slot slot;
      try {
        slot.batch = make(k);
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        ready.emplace(k, std::move(slot));
      }
      produced.notify_all();
    }
  }
};

Loader::Loader(const DataSplit& split, at::Tensor positions, int64_t batch_size, bool augment,
               int64_t epoch)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.split = &split;
  s.positions = positions.contiguous();  // int32 or int64; each batch's slice is converted
  s.batch_size = std::max<int64_t>(batch_size, 1);
  s.count = (s.positions.size(0) + s.batch_size - 1) / s.batch_size;
  s.augment = augment;
  s.epoch = epoch;
  s.capacity = std::max(split.prefetch(), split.workers());
  const int64_t workers = std::min(split.workers(), s.count);
  try {
    for (int64_t w = 0; w < workers; ++w) s.threads.emplace_back([&s] { s.work(); });
  } catch (const std::system_error& e) {
    stop();
    throw Error("data.workers: cannot start " + std::to_string(workers) + " threads (" + e.what() +
                ")");
  }
}

void Loader::stop() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
  }
  state_->taken.notify_all();
  for (std::thread& t : state_->threads) t.join();
  state_->threads.clear();
}

Loader::~Loader() { stop(); }

int64_t Loader::batches() const { return state_->count; }

bool Loader::next(Batch& out) {
  State& s = *state_;
  if (s.next_give >= s.count) return false;
  if (s.threads.empty()) {
    out = s.make(s.next_give++);
    return true;
  }
  State::Slot slot;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    s.produced.wait(lock, [&] { return s.ready.count(s.next_give) > 0; });
    auto it = s.ready.find(s.next_give);
    slot = std::move(it->second);
    s.ready.erase(it);
    ++s.next_give;
  }
  s.taken.notify_all();
  if (slot.error) std::rethrow_exception(slot.error);
  out = std::move(slot.batch);
  return true;
}

at::Tensor shard_positions(const at::Tensor& positions, int rank, int world, bool pad) {
  if (world <= 1) return positions;
  at::Tensor all = positions;
  const int64_t n = positions.numel();
  const int64_t total = (n + world - 1) / world * world;
  if (pad && total > n && n > 0) {
    // Wrapping round (again, for a set smaller than the world) as DistributedSampler pads.
    const at::Tensor wrap = at::arange(total - n, at::kLong).remainder(n);
    all = at::cat({positions, positions.index_select(0, wrap)});
  }
  return all.slice(0, rank, all.numel(), world).contiguous();
}

}  // namespace shrink
