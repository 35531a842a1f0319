// An experiment's data as training reads it: a split (a source, the samples used, how they are
// prepared) and a loader that prepares its batches ahead on worker threads, in a fixed order.
#pragma once

#include <shrink/config/data_options.hpp>
#include <shrink/data/source.hpp>
#include <shrink/data/transforms.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace shrink {

struct Batch {
  at::Tensor inputs;   // float32 [B, C, H, W]
  at::Tensor targets;  // int64 [B]
  int64_t size() const { return targets.defined() ? targets.size(0) : 0; }
};

// One split: the source, the samples used (all, or a seeded random subset), the training
// transforms (random ones included: `augment`) and the evaluation ones, and what the loader
// needs to know (workers, prefetch, what to do with an unreadable sample). Copies share the
// source and the count of skipped samples.
class DataSplit {
 public:
  DataSplit() = default;
  // Opens the split: the subset, and the shape of one prepared sample, from the first sample
  // (a split whose training and evaluation transforms give different shapes is refused).
  // `training_threads`: the intra-op threads training will use (automatic workers take the cores
  // left); 0: LibTorch's current count. `ranks_here`: the ranks of a distributed run on this
  // machine, which share its cores.
  DataSplit(std::shared_ptr<const Source> source, const DataOptions& options, bool train,
            uint64_t seed, int64_t training_threads = 0, int64_t ranks_here = 1);

  int64_t size() const { return size_; }
  bool defined() const { return source_ != nullptr; }
  const Source& source() const { return *source_; }
  int64_t sample_index(int64_t position) const {
    return subset_.empty() ? position : subset_[static_cast<std::size_t>(position)];
  }
  const Pipeline& pipeline(bool augment) const { return augment ? train_ : eval_; }
  const std::vector<int64_t>& shape() const { return shape_; }  // [C, H, W] as prepared
  // A sample's shape after the per-sample transforms (Pipeline::apply_each), which every other
  // sample must have.
  const std::vector<int64_t>& each_shape(bool augment) const { return each_shape_[augment]; }
  uint64_t seed() const { return seed_; }
  // The seed of the subset's generator (a limit): torch.randperm(source size, that generator)'s
  // first size() values, sorted, are the samples used; std::nullopt when every sample is.
  std::optional<uint64_t> subset_seed() const {
    return subset_.empty() ? std::nullopt : std::optional<uint64_t>(subset_seed_);
  }
  int64_t workers() const { return workers_; }
  int64_t prefetch() const { return prefetch_; }
  bool skips_bad_samples() const { return skip_; }
  // The unreadable samples skipped so far, each counted once however often it was met.
  int64_t skipped() const;
  std::string first_skipped() const;  // its name; "" when none
  void count_skipped(int64_t index) const;
  std::string first_name() const { return first_name_; }  // the sample whose shape shape() is

  // Labels in [0, classes) (0: not known, only >= 0): every label when the source knows them
  // without reading samples, else each as it is read. A bad one is a shrink::Error naming it.
  void check_labels(int64_t classes);
  int64_t classes() const { return classes_; }
  // A random order of the split's positions, fixed by (seed, epoch): int32 (int64 past 2^31).
  at::Tensor order(int64_t epoch) const;

 private:
  std::shared_ptr<const Source> source_;
  std::vector<int64_t> subset_;  // sample indices; empty: every sample, in order
  int64_t size_ = 0;
  Pipeline train_, eval_;
  std::vector<int64_t> shape_;
  std::vector<int64_t> each_shape_[2];  // [evaluation, training]
  std::string first_name_;
  uint64_t seed_ = 0, subset_seed_ = 0;
  int64_t workers_ = 0, prefetch_ = 2, classes_ = 0;
  bool skip_ = false;
  struct Skipped;
  std::shared_ptr<Skipped> skipped_;
};

// Prepares the samples at `positions` of the split (int64) into one batch, in this thread.
// `augment` applies the training transforms with the draws of `epoch`; otherwise the evaluation
// ones. A bad sample is skipped (and counted) or an error, as the split says; a sample of
// another shape is an error naming it and the split's first sample with both shapes.
Batch read_batch(const DataSplit& split, const at::Tensor& positions, bool augment, int64_t epoch);

// Batches of `batch_size` over `positions` (the last one shorter), in that order, prepared ahead
// by split.workers() threads into a queue of at most split.prefetch() batches (0 workers: each in
// next()). The batches, and so training, are the same for any number of workers.
class Loader {
 public:
  Loader(const DataSplit& split, at::Tensor positions, int64_t batch_size, bool augment,
         int64_t epoch);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t batches() const;
  // The next batch, or false after the last. An error preparing it is thrown here.
  bool next(Batch& out);

 private:
  void stop();  // the workers told to stop and joined
  struct State;
  std::unique_ptr<State> state_;
};

// Rank `rank` of `world`'s share of `positions` (a 1-D index tensor), as torch's
// DistributedSampler deals it: every world-th position from the rank's own, so that the ranks'
// i-th batches together are the i-th global batch whatever the world size. `pad`: the positions
// are first extended by wrapping round to a multiple of the world size (training: every rank
// takes as many steps); otherwise the shares differ by at most one (evaluation: each sample once).
at::Tensor shard_positions(const at::Tensor& positions, int rank, int world, bool pad);

// What data.workers: -1 means: for a source that decodes, the cores training leaves (of this
// rank's share of the machine, `ranks_here` ranks sharing it; at most 8;
// none left: 0, each batch prepared when training asks, which on a machine without a spare core
// is faster than a thread competing with training's: docs/results.md); for samples in memory, 0.
int64_t automatic_workers(bool decodes, int64_t training_threads, int64_t ranks_here = 1);

}  // namespace shrink
