#include <shrink/core/error.hpp>
#include <shrink/data/source.hpp>
#include <shrink/run/plan.hpp>

#include "run/plugin_source.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <iterator>

namespace shrink {
namespace {

// The smallest size a scaled JPEG decode may give a split's images: the first resize's, when
// every pipeline that reads the split starts with one (the training split also feeds
// calibration, with the evaluation transforms).
std::vector<int64_t> decode_floor(const DataOptions& o, bool train) {
  const std::vector<int64_t> eval = Pipeline(o.test_transforms).decode_floor();
  if (!train) return eval;
  const std::vector<int64_t> augment = Pipeline(o.train_transforms).decode_floor();
  return augment == eval ? eval : std::vector<int64_t>{};
}

std::shared_ptr<const Source> open_source(const Experiment& x, PluginRegistry& registry,
                                          bool train) {
  if (is_builtin_format(x.data.format)) {
    return open_builtin_source(x.data, train, decode_floor(x.data, train));
  }
  return open_plugin_source(x.data, train, registry);
}

// Class folders of the two splits are numbered each by its own sorted names: the same labels
// need the same folders.
void check_same_classes(const Source& train, const Source& test, const DataOptions& o) {
  const std::vector<std::string> a = train.classes(), b = test.classes();
  if (a.empty() || b.empty() || a == b) return;
  // Both are sorted: what one has and the other lacks, a few of each.
  const auto only_in = [](const std::vector<std::string>& x, const std::vector<std::string>& y) {
    std::vector<std::string> d;
    std::set_difference(x.begin(), x.end(), y.begin(), y.end(), std::back_inserter(d));
    std::string text;
    for (std::size_t k = 0; k < d.size() && k < 3; ++k) text += (k ? ", '" : "'") + d[k] + "'";
    if (d.size() > 3) text += " and " + std::to_string(d.size() - 3) + " more";
    return text.empty() ? std::string("none") : text;
  };
  throw Error(o.test_path + ": its " + std::to_string(b.size()) +
              " class folders are not the training data's " + std::to_string(a.size()) +
              " (missing: " + only_in(a, b) + "; not in the training data: " + only_in(b, a) +
              "): each split numbers its classes by their sorted names");
}

}  // namespace

std::pair<DataSplit, DataSplit> open_data(const Experiment& x, PluginRegistry& registry,
                                          int ranks_here) {
  const std::shared_ptr<const Source> train = open_source(x, registry, true);
  const std::shared_ptr<const Source> test = open_source(x, registry, false);
  check_same_classes(*train, *test, x.data);
  const auto seed = static_cast<uint64_t>(x.seed);
  // The run sets its threads later (prepare); automatic workers take the cores it leaves.
  const int64_t threads = x.threads;
  DataSplit train_split(train, x.data, true, seed, threads, ranks_here);
  DataSplit test_split(test, x.data, false, seed, threads, ranks_here);
  SHRINK_CHECK(train_split.shape() == test_split.shape(),
               test_split.first_name()
                   << " is " << c10::IntArrayRef(test_split.shape()) << " once prepared, "
                   << train_split.first_name() << " " << c10::IntArrayRef(train_split.shape())
                   << (train_split.shape()[0] != test_split.shape()[0]
                           ? ": the test samples must come out with the training ones' channels "
                             "(gray and colour images? to_channels in data.transforms)"
                           : ": the test samples must come out the size of the training ones (a "
                             "resize or a crop in data.transforms)"));
  return {train_split, test_split};
}

}  // namespace shrink
