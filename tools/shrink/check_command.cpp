#include "check_command.hpp"

#include <shrink/config/config_list.hpp>
#include <shrink/core/error.hpp>
#include <shrink/host/plugin_check.hpp>
#include <shrink/host/plugin_registry.hpp>
#include <shrink/run/plugin_keys.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

namespace shrink_cli {
namespace {

// The sites `shrink check` sets up on one made-up convolution, with the tensors they see.
struct CheckSite {
  const char* target;
  shrink::QuantType type;
  std::vector<int64_t> shape;
};
const CheckSite kSites[] = {{"weight", shrink::QuantType::kWeight, {8, 4, 3, 3}},
                            {"_input_", shrink::QuantType::kInput, {2, 4, 6, 6}},
                            {"_output_", shrink::QuantType::kOutput, {2, 8, 4, 4}}};
constexpr const char* kModule = "check.conv";

// "key=value" pairs of a repeatable flag.
shrink::Options key_values(const std::vector<std::string>& pairs, const char* flag) {
  shrink::Options out;
  for (const auto& kv : pairs) {
    const auto eq = kv.find('=');
    SHRINK_CHECK(eq != std::string::npos && eq > 0, flag << " '" << kv << "' is not key=value");
    out.set(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return out;
}

// --site keys: the framework's, or declared by the algorithm.
void check_site_keys(const shrink::Options& config, const shrink::AlgorithmInfo& alg) {
  const auto& framework = shrink::config_list_keys();
  for (const auto& kv : config.entries) {
    const bool known = std::count(framework.begin(), framework.end(), kv.first) > 0 ||
                       std::count(alg.site_keys.begin(), alg.site_keys.end(), kv.first) > 0;
    SHRINK_CHECK(known, "--site '" << kv.first << "=" << kv.second << "': unknown key '" << kv.first
                                   << "' (allowed: " << shrink::allowed_keys_text(alg) << ")");
  }
}

const char* call_of(shrink::QuantType type) {
  return type == shrink::QuantType::kWeight  ? "quantize_weight"
         : type == shrink::QuantType::kInput ? "quantize_input"
                                             : "quantize_output";
}

std::string shape_text(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

// Sets up every check site the plugin accepts; a site it refuses is a note, all refused an error.
std::map<int, at::Tensor> set_up_sites(shrink::QuantizerInstance& q,
                                       const shrink::Options& config) {
  std::map<int, at::Tensor> inputs;
  std::string first_refusal;
  for (const CheckSite& s : kSites) {
    shrink::SiteSpec spec{kModule, "Conv2d", s.target, s.type, config, {}};
    const at::Tensor t = torch::randn(s.shape);
    if (s.type == shrink::QuantType::kWeight) spec.sample = t;
    try {
      inputs[q.add_site(spec)] = t;
    } catch (const shrink::Error& e) {
      std::cout << "  " << kModule << "." << s.target << ": not set up: " << e.what() << "\n";
      if (first_refusal.empty()) first_refusal = e.what();
    }
  }
  SHRINK_CHECK(!inputs.empty(), first_refusal);
  return inputs;
}

void print_state(shrink::QuantizerInstance& q, int site) {
  std::string text;
  for (const auto& s : q.site_state(site)) {
    text += (text.empty() ? "" : ", ") + s.name + (s.learnable ? " parameter " : " buffer ") +
            shape_text(s.value) + (s.learnable && !s.weight_decay ? " (no weight decay)" : "");
  }
  std::cout << "  state: " << (text.empty() ? "none" : text) << "\n";
}

void print_export(const shrink::Calibration& c) {
  std::cout << "  export_site ok: ";
  if (!c.scale.defined()) {
    std::cout << "no scale (the site stays in float)\n";
    return;
  }
  std::cout << c.scale.numel() << " scale(s) in [" << c.scale.min().item<double>() << ", "
            << c.scale.max().item<double>() << "], " << c.quant_dtype << " " << c.quant_scheme
            << " [" << c.quant_min << ", " << c.quant_max << "]\n";
}

// One site's results: the first line keeps the words scripts look for ("quantize_weight ok").
void print_site(const std::string& name, shrink::QuantizerInstance& q,
                const shrink::SiteDryRun& r) {
  const shrink::SiteSpec& spec = q.site_spec(r.site);
  const std::string site = spec.module_name + "." + spec.target;
  if (!r.output.defined()) std::cout << name << ": " << site << " not quantized (no input)\n";
  if (r.output.defined()) {
    const double err = (r.output - r.input).abs().max().item<double>();
    std::cout << name << ": " << call_of(spec.quant_type) << " ok at " << site << ", shape "
              << r.output.sizes() << ", max |"
              << (spec.quant_type == shrink::QuantType::kWeight ? "w_hat - w" : "x_hat - x")
              << "| = " << err;
    if (r.input_grad.defined()) {
      std::cout << ", " << (q.has_quant_grad() ? "QuantGrad" : "straight-through")
                << " backward ok, grad sum " << r.input_grad.sum().item<double>();
    }
    std::cout << "\n";
  }
  print_state(q, r.site);
  for (const auto& g : r.gradients) {
    std::cout << "  gradient of '" << g.first << "' ok: shape " << g.second.sizes() << ", sum "
              << g.second.sum().item<double>() << "\n";
  }
  if (r.exported) print_export(r.calibration);
}

int check_quantizer(const shrink::AlgorithmInfo& alg, const shrink::Options& options,
                    const shrink::Options& config) {
  shrink::QuantizerInstance q(alg, options);
  const std::map<int, at::Tensor> inputs = set_up_sites(q, config);
  const std::vector<shrink::SiteDryRun> runs = shrink::dry_run(q, inputs);
  for (const auto& r : runs) print_site(alg.name, q, r);
  q.step();
  q.update_epoch(0);
  return 0;
}

int check_masker(const shrink::AlgorithmInfo& alg, const shrink::Options& options,
                 const shrink::Options& config, double sparsity) {
  shrink::MaskerInstance m(alg, options);
  const shrink::WrapperSpec wrapper{kModule, "Conv2d", config, torch::randn({8, 4, 3, 3}),
                                    torch::randn({8})};
  const shrink::WrapperDryRun r = shrink::dry_run(m, {wrapper}, sparsity).at(0);
  const double kept = r.masks.weight_mask.to(torch::kDouble).mean().item<double>();
  if (m.ranks_in_training()) {
    std::cout << alg.name << ": observe ok (one made-up training step: it ranks in training)\n";
  }
  if (r.importance.defined()) {
    std::cout << alg.name << ": importance ok, shape " << r.importance.sizes() << "\n";
  }
  std::cout << alg.name << ": calc_mask ok at sparsity " << sparsity << ", weight_mask keeps "
            << kept << " of the weights\n";
  m.update_epoch(0);
  m.step();
  return 0;
}

}  // namespace

int run_check(const std::vector<std::string>& plugin_paths, const CheckArgs& args) {
  shrink::PluginRegistry registry;
  registry.discover(shrink::plugin_search_paths({}, plugin_paths));
  const shrink::AlgorithmInfo& alg = registry.require(args.algorithm);
  const shrink::Options options = key_values(args.options, "--option");
  const shrink::Options config = key_values(args.site_config, "--site");
  check_site_keys(config, alg);
  torch::manual_seed(0);
  if (alg.is_quantizer()) return check_quantizer(alg, options, config);
  return check_masker(alg, options, config, args.sparsity);
}

}  // namespace shrink_cli
