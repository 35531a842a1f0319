// Running a plugin once, with every check on, before it is trusted with a run: what `shrink check`
// does for a plugin author, and what the plan check does before anything trains.
#pragma once

#include <shrink/host/masker_instance.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/results.hpp>

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace shrink {

// The value checks (results holding NaN or inf) that new QuantizerInstance and MaskerInstance
// objects start with. Off by default: each check costs a host sync per call, and QAT's per-call
// overhead is a target. `shrink run --check-plugins` turns it on for the whole run.
void set_value_checks_by_default(bool on);
bool value_checks_by_default();

// What one quantizer site did in a dry run.
struct SiteDryRun {
  int site = 0;
  at::Tensor input;       // undefined when the site had nothing to quantize (an activation site
  at::Tensor output;      // without an input)
  at::Tensor input_grad;  // the input's gradient, when a backward ran
  std::vector<std::pair<std::string, at::Tensor>> gradients;  // of each learnable parameter
  bool exported = false;
  Calibration calibration;  // when exported
};

// Runs every site of `quantizer` once, as the first training step (or, for a post-training
// algorithm, a calibration pass and an evaluation) would, with every check on, values included:
//  - quantize on the site's input: a weight site's sample (SiteSpec::sample), another site's
//    tensor in `inputs` (by site index); a site without one is not quantized;
//  - for an algorithm that trains, a backward through each quantize call: the input gradient is
//    checked like the output, and each learnable parameter must get a finite gradient of its
//    shape (the gradients are cleared afterwards);
//  - for a post-training algorithm (calibration without training) whose every site has an input,
//    a calibration pass and end_calibration first;
//  - export_site for every site when the algorithm exports (the contract in plugin_api.h).
// Changes the plugin's state as a first forward would: run it on a throwaway instance (the plan
// check's probe) or before training starts. Throws shrink::Error with one line naming the plugin,
// the site and the call.
std::vector<SiteDryRun> dry_run(QuantizerInstance& quantizer,
                                const std::map<int, at::Tensor>& inputs = {});

// What one wrapper gave in a masker's dry run.
struct WrapperDryRun {
  Masks masks;
  at::Tensor importance;  // undefined when the masker does not rank
};

// One importance and one calc_mask(sparsity) per wrapper, in order, every check on. A pruner that
// ranks in training first observes one made-up training step per wrapper (a random weight
// gradient, and a random output_grad_product [2, C] when it observes outputs), as its stage's
// training would before its first mask. Changes the plugin's state: use a throwaway instance.
// Throws shrink::Error naming the plugin, the op and the call.
std::vector<WrapperDryRun> dry_run(MaskerInstance& masker, const std::vector<WrapperSpec>& wrappers,
                                   double sparsity);

}  // namespace shrink
