// Where an experiment's data come from and how they are prepared (the experiment's `data:` keys).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace shrink {

// One step of a split's preparation: torchvision's transform of the same name, with its meaning.
struct TransformSpec {
  std::string name;           // resize, center_crop, random_resized_crop, random_crop,
                              // random_horizontal_flip, to_channels, normalize
  std::vector<int64_t> size;  // [h, w]; resize with one value: the smaller edge becomes it
  bool antialias = true;      // resize, random_resized_crop (torchvision >= 0.17's default)
  std::vector<double> scale = {0.08, 1.0};             // random_resized_crop: area fraction
  std::vector<double> ratio = {3.0 / 4.0, 4.0 / 3.0};  // random_resized_crop: aspect w / h
  std::vector<int64_t> padding = {0, 0, 0, 0};         // random_crop: left, top, right, bottom
  double p = 0.5;                                      // random_horizontal_flip
  int64_t channels = 3;                                // to_channels
  std::vector<double> mean, std;                       // normalize, per channel
  std::string where;                                   // file:line:column, for messages
  std::string key;  // the key that asked for it ("data.transforms.train.normalize"), for messages

  bool random() const {
    return name == "random_resized_crop" || name == "random_crop" ||
           name == "random_horizontal_flip";
  }
};

// Whether `format` is one Shrink reads itself (idx, tensors, folder); any other names a
// data-source plugin.
inline bool is_builtin_format(const std::string& format) {
  return format == "idx" || format == "tensors" || format == "folder";
}

struct DataOptions {
  // idx, tensors, folder, or the name of a data-source plugin
  std::string format = "idx";
  std::string path;       // IDX folder, torch.save file, image folder (class folders)
  std::string test_path;  // the evaluation file or folder (not idx)
  std::string list;       // folder: a list file of `path label` lines instead of class folders
  std::string test_list;  // the same for the evaluation split
  std::vector<TransformSpec> train_transforms;
  std::vector<TransformSpec> test_transforms;  // deterministic only
  std::string on_bad_sample = "error";         // an unreadable image: "error" or "skip"
  bool scaled_decode = true;  // JPEG: decode at 1/2, 1/4, 1/8 when a first resize allows it
  int64_t workers = -1;       // decoding threads; -1: automatic (DataSplit says how many)
  int64_t prefetch = 0;       // batches prepared ahead; 0: two per worker
  int64_t train_limit = 0;    // a seeded random subset of N training samples; 0: all
  int64_t test_limit = 0;     // the same for the test split
  // A data-source plugin's own keys, flattened ("a.b" = "1"), with where each was written.
  std::vector<std::pair<std::string, std::string>> plugin_keys;
  std::vector<std::string> plugin_key_places;
  std::string where;  // the `data:` mapping's file:line:column
};

}  // namespace shrink
