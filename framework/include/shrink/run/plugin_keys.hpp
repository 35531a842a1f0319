// A stage's config_list keys against what its algorithm declares: where the config layer (which
// knows no plugin) meets the registry (which knows what each plugin reads).
#pragma once

#include <shrink/config/config_list.hpp>
#include <shrink/host/plugin_registry.hpp>

#include <string>

namespace shrink {

// Throws shrink::Error for the first key of `config` that neither the framework
// (config_list_keys()) nor `algorithm` (AlgorithmInfo::site_keys) knows:
//   "exp.yaml:12:9: compress[0].config_list[1]: unknown key 'quant_start_stp' (allowed: op_names,
//    ..., max_sparsity_per_layer, and 'qat' declares: quant_start_step)"
// `stage` ("compress[0]") prefixes the entry's name; "" leaves just "config_list[1]".
void check_plugin_keys(const ConfigList& config, const AlgorithmInfo& algorithm,
                       const std::string& stage);

// "op_names, ..., max_sparsity_per_layer, and 'qat' declares: quant_start_step": the keys a
// config_list entry of a stage using `algorithm` may give, as the message above lists them.
std::string allowed_keys_text(const AlgorithmInfo& algorithm);

}  // namespace shrink
