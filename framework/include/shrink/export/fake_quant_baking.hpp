// model_qat.pt: a wrapped model's shrink::quantize calls replaced by ATen fake-quant ops that
// carry each site's exported calibration, so that plain LibTorch and Python load the model
// without Shrink.
#pragma once

namespace shrink {

class Model;

// Rewrites `model`'s forward graph in place (sites in branches too). A site without a calibrated
// scale (one that never saw data) is left in float, with a warning naming it.
void bake_fake_quant(Model& model);

}  // namespace shrink
