// Typed access to one YAML mapping of an experiment (private to config/).
#pragma once

#include <shrink/core/error.hpp>

#include "config/yaml_messages.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

namespace shrink::detail {

// Typed access to one YAML mapping with its allowed keys; every error names file, line, key.
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string file, std::string path,
            std::vector<std::string> allowed)
      : node_(node), file_(std::move(file)), path_(std::move(path)), allowed_(std::move(allowed)) {
    SHRINK_CHECK(node_.IsMap(), detail::yaml_mark(file_, node_)
                                    << ": " << path_ << ": expected a mapping");
    for (const auto& kv : node_) {
      const std::string key = kv.first.as<std::string>();
      if (std::find(allowed_.begin(), allowed_.end(), key) == allowed_.end()) {
        throw Error(detail::yaml_mark(file_, kv.first) + ": " + qualified(key) +
                    ": unknown key (allowed: " + join(allowed_) + ")");
      }
    }
  }

  bool has(const std::string& key) const { return static_cast<bool>(node_[key]); }
  YAML::Node node(const std::string& key) const { return node_[key]; }
  std::string where(const std::string& key) const {
    return has(key) ? detail::yaml_mark(file_, node_[key]) : detail::yaml_mark(file_, node_);
  }
  std::string qualified(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }

  std::string str(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    SHRINK_CHECK(node_[key].IsScalar(), where(key)
                                            << ": " << qualified(key) << ": expected a string");
    return node_[key].as<std::string>();
  }
  // A string that must be one of `allowed`.
  std::string choice(const std::string& key, const std::string& fallback,
                     const std::vector<std::string>& allowed) const {
    const std::string v = str(key, fallback);
    SHRINK_CHECK(std::find(allowed.begin(), allowed.end(), v) != allowed.end(),
                 where(key) << ": " << qualified(key) << ": '" << v
                            << "' (allowed: " << join(allowed) << ")");
    return v;
  }
  int64_t integer(const std::string& key, int64_t fallback, int64_t min_value,
                  int64_t max_value = std::numeric_limits<int64_t>::max()) const {
    const int64_t v = scalar<int64_t>(key, fallback, min_value, "an integer");
    SHRINK_CHECK(v <= max_value, where(key) << ": " << qualified(key) << ": " << v
                                            << " is above the maximum " << max_value);
    return v;
  }
  double number(const std::string& key, double fallback, double min_value) const {
    return scalar<double>(key, fallback, min_value, "a number");
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    try {
      SHRINK_CHECK(node_[key].IsScalar(), "");
      return node_[key].as<bool>();
    } catch (const std::exception&) {
      throw Error(where(key) + ": " + qualified(key) + ": expected true or false");
    }
  }
  std::vector<double> numbers(const std::string& key) const {
    std::vector<double> out;
    if (!has(key)) return out;
    SHRINK_CHECK(node_[key].IsSequence(),
                 where(key) << ": " << qualified(key) << ": expected a list of numbers");
    for (const auto& item : node_[key]) {
      try {
        out.push_back(item.as<double>());
      } catch (const std::exception&) {
        throw Error(detail::yaml_mark(file_, item) + ": " + qualified(key) + ": expected a number");
      }
    }
    return out;
  }
  std::vector<std::string> strings(const std::string& key) const {
    std::vector<std::string> out;
    if (!has(key)) return out;
    SHRINK_CHECK(node_[key].IsSequence(),
                 where(key) << ": " << qualified(key) << ": expected a list of strings");
    for (const auto& item : node_[key]) {
      SHRINK_CHECK(item.IsScalar(), detail::yaml_mark(file_, item)
                                        << ": " << qualified(key)
                                        << ": expected a list of strings");
      out.push_back(item.as<std::string>());
    }
    return out;
  }

 private:
  template <typename T>
  T scalar(const std::string& key, T fallback, T min_value, const char* what) const {
    if (!has(key)) return fallback;
    T v{};
    try {
      SHRINK_CHECK(node_[key].IsScalar(), "");
      v = node_[key].as<T>();
    } catch (const std::exception&) {
      throw Error(where(key) + ": " + qualified(key) + ": expected " + what);
    }
    SHRINK_CHECK(v >= min_value, where(key) << ": " << qualified(key) << ": " << v
                                            << " is below the minimum " << min_value);
    return v;
  }

  YAML::Node node_;
  std::string file_;
  std::string path_;
  std::vector<std::string> allowed_;
};

}  // namespace shrink::detail
