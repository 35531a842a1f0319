#include "run/report_json.hpp"

#include <shrink/core/error.hpp>
#include <shrink/core/files.hpp>
#include <shrink/prune/pruning_stage.hpp>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>

namespace shrink {

using json = nlohmann::json;

json yaml_to_json(const YAML::Node& node) {
  if (node.IsMap()) {
    json out = json::object();
    for (const auto& kv : node) out[kv.first.as<std::string>()] = yaml_to_json(kv.second);
    return out;
  }
  if (node.IsSequence()) {
    json out = json::array();
    for (const auto& item : node) out.push_back(yaml_to_json(item));
    return out;
  }
  if (!node.IsScalar() || node.Tag() == "~") return nullptr;
  const std::string text = node.Scalar();
  if (node.Tag() == "!") return text;  // quoted: a string as written
  int64_t i = 0;
  double d = 0;
  bool b = false;
  if (YAML::convert<int64_t>::decode(node, i)) return i;
  if (YAML::convert<double>::decode(node, d)) return d;
  if (YAML::convert<bool>::decode(node, b)) return b;
  return text;
}

json tensor_json(const at::Tensor& t) {
  if (!t.defined()) return nullptr;
  const at::Tensor d = t.to(at::kDouble).contiguous().reshape({-1});
  if (t.numel() == 1) return d.item<double>();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

void write_json(const std::filesystem::path& file, const json& value) {
  write_file_atomically(file, value.dump(2) + "\n");
}

namespace {

json op_row(const MaskedOp& op, const std::vector<std::string>& shares, int64_t& zeros,
            int64_t& total) {
  const at::Tensor m = op.weight_mask;
  const int64_t n = m.numel(), kept = m.ne(0).sum().item<int64_t>();
  const int64_t channels = m.dim() > 0 ? m.size(0) : 1;
  const int64_t gone =
      m.dim() > 0 ? m.reshape({channels, -1}).ne(0).any(1).logical_not().sum().item<int64_t>() : 0;
  zeros += n - kept;
  total += n;
  return {{"op", op.target.op_name},
          {"type", op.target.op_type},
          {"target_sparsity", op.target.sparsity},
          {"global", op.target.global},
          {"weight_sparsity", static_cast<double>(n - kept) / static_cast<double>(n)},
          {"channels", channels},
          {"channels_pruned", gone},
          {"shares_mask_with", shares}};
}

}  // namespace

json pruning_table(const PruningStage& stage) {
  json ops = json::array();
  int64_t zeros = 0, total = 0;
  for (std::size_t i = 0; i < stage.ops().size(); ++i) {
    std::vector<std::string> shares;  // the other ops of its residual group, pruned as one
    for (const auto& group : stage.shared_masks()) {
      if (std::find(group.begin(), group.end(), i) == group.end()) continue;
      for (std::size_t k : group) {
        if (k != i) shares.push_back(stage.ops()[k].target.op_name);
      }
    }
    ops.push_back(op_row(stage.ops()[i], shares, zeros, total));
  }
  json followers = json::array();
  for (const auto& f : stage.followers()) {
    followers.push_back({{"op", f.op_name}, {"follows", stage.ops()[f.leader].target.op_name}});
  }
  return {
      {"ops", ops},
      {"batchnorms_following", followers},
      {"weight_sparsity", total ? static_cast<double>(zeros) / static_cast<double>(total) : 0.0}};
}

}  // namespace shrink
