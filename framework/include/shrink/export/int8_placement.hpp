// Placement for the int8 backend (`- preset: int8_onednn` in a config_list): the fake-quant sites
// that the int8 lowering consumes, found by walking the model's graph, so that nobody writes them
// by hand per architecture.
//
// The walk goes over the forward graph in evaluation form, in order, and asks the lowering's rule
// table (export/int8/rule_table.hpp) what each op's rule needs:
//  - a convolution or linear gets a site on its input (unless the value is int8 already), on its
//    weight, and on its output after the ops it fuses (BatchNorm, ReLU or ReLU6);
//  - add, cat, mul, SiLU, hardswish and an unfolded BatchNorm run int8 when one of their inputs
//    already is: the others get input sites, the output (after a fused ReLU) a site of its own;
//  - pooling, ReLU, reshapes, chunk, mean and dropout keep their input's range (no site);
//    sigmoid and hardsigmoid put theirs on the kernel's fixed grid (no site);
//  - everything else stays float, and where it reads an int8 value the placement says so.
// A site goes on the output of the op that makes the value (a module, or a functional call) or,
// where that op carries no site, on the input of the op that reads it. An op the walk cannot
// place around stays float with a note, never an error.
#pragma once

#include <shrink/config/config_list.hpp>

#include <string>
#include <vector>

namespace shrink {

class Model;

struct Int8Placement {
  std::vector<PlacedSite> sites;   // in graph order, each with why it is there
  std::vector<std::string> notes;  // ops left float where they meet int8 ones, and why
  int weighted_ops = 0;            // convolutions and linears that will run int8
  int other_ops = 0;               // add, cat, mul, ... that will run int8
};

// The sites preset entry `preset` of `config` places on `model` (ops that preset_excludes leaves
// out stay float). Does not change the model.
Int8Placement place_int8_sites(const Model& model, const ConfigList& config,
                               const ConfigEntry& preset);

}  // namespace shrink
