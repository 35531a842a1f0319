#include "config/data_reader.hpp"

#include <shrink/config/experiment.hpp>
#include <shrink/core/error.hpp>

#include "config/map_reader.hpp"
#include "config/yaml_messages.hpp"

#include <cmath>

namespace shrink::detail {
namespace {

const std::vector<std::string> kTransforms = {
    "resize",      "center_crop", "random_resized_crop", "random_crop", "random_horizontal_flip",
    "to_channels", "normalize"};

// A size: one side (a square; for resize, the smaller edge) or [h, w].
std::vector<int64_t> read_size(const YAML::Node& node, const std::string& file,
                               const std::string& key, bool one_side_allowed) {
  std::vector<int64_t> size;
  try {
    if (node.IsScalar()) {
      const int64_t side = node.as<int64_t>();
      size = one_side_allowed ? std::vector<int64_t>{side} : std::vector<int64_t>{side, side};
    } else if (node.IsSequence() && node.size() == 2) {
      size = {node[0].as<int64_t>(), node[1].as<int64_t>()};
    }
  } catch (const std::exception&) {
    size.clear();
  }
  SHRINK_CHECK(!size.empty(), yaml_mark(file, node)
                                  << ": " << key << ": expected a side or [height, width]");
  for (int64_t s : size) {
    SHRINK_CHECK(s >= 1 && s <= kMaxImageSide, yaml_mark(file, node)
                                                   << ": " << key << ": " << s << " is outside [1, "
                                                   << kMaxImageSide << "]");
  }
  return size;
}

// A pair of numbers a <= b (scale, ratio), each above `low`.
std::vector<double> read_range(const MapReader& m, const std::string& key,
                               std::vector<double> fallback, double low) {
  if (!m.has(key)) return fallback;
  const std::vector<double> v = m.numbers(key);
  SHRINK_CHECK(v.size() == 2 && v[0] <= v[1] && v[0] > low,
               m.where(key) << ": " << m.qualified(key) << ": expected [low, high] with " << low
                            << " < low <= high");
  return v;
}

// random_crop's padding: one value for every side, [left/right, top/bottom], or four.
std::vector<int64_t> read_padding(const YAML::Node& node, const std::string& file,
                                  const std::string& key) {
  std::vector<int64_t> v;
  try {
    if (node.IsScalar()) v = {node.as<int64_t>()};
    if (node.IsSequence()) {
      for (const auto& item : node) v.push_back(item.as<int64_t>());
    }
  } catch (const std::exception&) {
    v.clear();
  }
  const bool ok = (v.size() == 1 || v.size() == 2 || v.size() == 4) &&
                  std::all_of(v.begin(), v.end(), [](int64_t p) { return p >= 0 && p <= 1024; });
  SHRINK_CHECK(ok, yaml_mark(file, node) << ": " << key
                                         << ": expected a padding in pixels (0 to 1024): one "
                                            "value, [left/right, top/bottom] or four");
  if (v.size() == 1) return {v[0], v[0], v[0], v[0]};
  if (v.size() == 2) return {v[0], v[1], v[0], v[1]};
  return v;
}

void read_normalize(const MapReader& m, TransformSpec& t) {
  t.mean = m.numbers("mean");
  t.std = m.numbers("std");
  SHRINK_CHECK(t.mean.size() == t.std.size() && !t.mean.empty(),
               m.where("std") << ": " << m.qualified("std")
                              << ": mean and std need the same, non-zero length");
  for (double s : t.std) {
    SHRINK_CHECK(s > 0, m.where("std")
                            << ": " << m.qualified("std") << ": every value must be > 0");
  }
}

// The options of a transform written as a mapping: {resize: {size: 32, antialias: false}}.
void read_options(const YAML::Node& node, const std::string& file, const std::string& key,
                  TransformSpec& t) {
  static const std::map<std::string, std::vector<std::string>> allowed = {
      {"resize", {"size", "antialias"}},
      {"center_crop", {"size"}},
      {"random_resized_crop", {"size", "scale", "ratio", "antialias"}},
      {"random_crop", {"size", "padding"}},
      {"random_horizontal_flip", {"p"}},
      {"to_channels", {"channels"}},
      {"normalize", {"mean", "std"}}};
  const MapReader m(node, file, key, allowed.at(t.name));
  if (t.name == "normalize") return read_normalize(m, t);
  if (t.name == "random_horizontal_flip") {
    t.p = m.number("p", 0.5, 0.0);
    SHRINK_CHECK(t.p <= 1.0, m.where("p") << ": " << m.qualified("p") << ": above 1");
    return;
  }
  if (t.name == "to_channels") {
    t.channels = m.integer("channels", 3, 1, kMaxChannels);
    return;
  }
  SHRINK_CHECK(m.has("size"), m.where("size") << ": " << m.qualified("size") << ": required");
  t.size = read_size(m.node("size"), file, m.qualified("size"), t.name == "resize");
  t.antialias = m.boolean("antialias", true);
  t.scale = read_range(m, "scale", t.scale, 0.0);
  t.ratio = read_range(m, "ratio", t.ratio, 0.0);
  if (m.has("padding")) t.padding = read_padding(m.node("padding"), file, m.qualified("padding"));
}

// One item: `random_horizontal_flip`, `{center_crop: 28}` or `{resize: {size: 32}}`.
TransformSpec read_transform(const YAML::Node& item, const std::string& file,
                             const std::string& list) {
  TransformSpec t;
  t.where = yaml_mark(file, item);
  YAML::Node value;
  if (item.IsScalar()) {
    t.name = item.as<std::string>();
  } else {
    SHRINK_CHECK(item.IsMap() && item.size() == 1,
                 t.where << ": " << list << ": expected a transform: a name, or {name: options}");
    t.name = item.begin()->first.as<std::string>();
    value = item.begin()->second;
  }
  SHRINK_CHECK(std::find(kTransforms.begin(), kTransforms.end(), t.name) != kTransforms.end(),
               t.where << ": " << list << ": unknown transform '" << t.name
                       << "' (known: " << join(kTransforms) << ")");
  const std::string key = list + "." + t.name;
  t.key = key;
  if (value && value.IsMap()) {
    read_options(value, file, key, t);
  } else if (value && !value.IsNull()) {
    // The shorthand: the transform's main value.
    YAML::Node wrapped;
    const std::string main = t.name == "normalize"                ? ""
                             : t.name == "random_horizontal_flip" ? "p"
                             : t.name == "to_channels"            ? "channels"
                                                                  : "size";
    SHRINK_CHECK(!main.empty(), t.where << ": " << key << ": expected {mean: [...], std: [...]}");
    wrapped[main] = value;
    read_options(wrapped, file, key, t);
  } else {
    SHRINK_CHECK(t.name == "random_horizontal_flip" || t.name == "to_channels",
                 t.where << ": " << key << ": needs its options (e.g. {" << t.name << ": 32})");
  }
  return t;
}

std::vector<TransformSpec> read_list(const YAML::Node& node, const std::string& file,
                                     const std::string& list) {
  SHRINK_CHECK(node.IsSequence(), yaml_mark(file, node)
                                      << ": " << list << ": expected a list of transforms");
  std::vector<TransformSpec> out;
  for (const auto& item : node) out.push_back(read_transform(item, file, list));
  return out;
}

// Evaluation's counterpart of a training list: a random crop becomes the centre one of the same
// size (random_resized_crop: the image resized to that size, then its centre), a flip nothing.
std::vector<TransformSpec> deterministic(const std::vector<TransformSpec>& train) {
  std::vector<TransformSpec> out;
  for (const TransformSpec& t : train) {
    if (!t.random()) {
      out.push_back(t);
      continue;
    }
    if (t.name == "random_horizontal_flip") continue;
    TransformSpec crop = t;
    crop.name = "center_crop";
    if (t.name == "random_resized_crop") {
      TransformSpec resize = t;
      resize.name = "resize";
      resize.size = {std::min(t.size[0], t.size[1])};
      out.push_back(resize);
    }
    out.push_back(crop);
  }
  return out;
}

}  // namespace

void read_transforms(const YAML::Node& node, const std::string& file, DataOptions& data) {
  if (node.IsSequence()) {
    data.train_transforms = read_list(node, file, "data.transforms");
    data.test_transforms = deterministic(data.train_transforms);
    return;
  }
  SHRINK_CHECK(node.IsMap(), yaml_mark(file, node)
                                 << ": data.transforms: expected a list of transforms, or {train: "
                                    "[...], test: [...]}");
  const MapReader m(node, file, "data.transforms", {"train", "test"});
  SHRINK_CHECK(m.has("train") && m.has("test"),
               yaml_mark(file, node) << ": data.transforms: give both train and test lists (or "
                                        "one list, for training, whose deterministic part "
                                        "evaluation uses)");
  data.train_transforms = read_list(m.node("train"), file, "data.transforms.train");
  data.test_transforms = read_list(m.node("test"), file, "data.transforms.test");
  for (const TransformSpec& t : data.test_transforms) {
    SHRINK_CHECK(!t.random(), t.where << ": data.transforms.test: " << t.name
                                      << " is random; evaluation takes deterministic transforms "
                                         "(center_crop for a random crop)");
  }
}

void read_legacy_transforms(const MapReader& d, const std::string& file, DataOptions& data) {
  std::vector<TransformSpec> list;
  const auto add = [&](const char* name, const std::string& key) -> TransformSpec& {
    TransformSpec& t = list.emplace_back();
    t.name = name;
    t.where = d.where(key);
    t.key = d.qualified(key);
    return t;
  };
  if (const int64_t resize = d.integer("resize", 0, 0, kMaxImageSide); resize > 0) {
    TransformSpec& t = add("resize", "resize");
    t.size = {resize, resize};
    t.antialias = false;  // what `resize` always did: bilinear without antialiasing
  }
  if (const int64_t channels = d.integer("channels", 0, 0, kMaxChannels); channels > 0) {
    add("to_channels", "channels").channels = channels;
  }
  if (d.has("normalize")) {
    read_normalize(MapReader(d.node("normalize"), file, "data.normalize", {"mean", "std"}),
                   add("normalize", "normalize"));
  }
  data.train_transforms = list;
  data.test_transforms = list;
}

}  // namespace shrink::detail
