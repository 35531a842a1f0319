#include <shrink/graph/quantized_model.hpp>
#include <shrink/host/quantizer_instance.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/passes.hpp>

#include "run/report_json.hpp"

#include <filesystem>

namespace shrink {
namespace {

using json = nlohmann::json;

json calibration_entry(const Calibration& cal) {
  return {{"scale", tensor_json(cal.scale)},
          {"zero_point", tensor_json(cal.zero_point)},
          {"quant_dtype", cal.quant_dtype},
          {"quant_scheme", cal.quant_scheme},
          {"quant_bits", cal.quant_bits},
          {"tracked_min", number_or_null(cal.tracked_min)},
          {"tracked_max", number_or_null(cal.tracked_max)}};
}

// The state the plugin declared for a site, with its final values: {name: {learnable, value}}.
json state_entry(QuantizerInstance& q, int id) {
  json state = json::object();
  for (const SiteState& s : q.site_state(id)) {
    state[s.name] = {{"learnable", s.learnable}, {"value", tensor_json(s.value)}};
  }
  return state;
}

// The report's entry of one site: its calibration, its declared state, its quantization SQNR on
// the calibration samples against the float model's value there and against its own input
// (null: it saw nothing, or changed nothing).
json site_entry(QuantizerInstance& q, const PlannedSite& s, int id, const json& calibration,
                const Calibration& cal) {
  json site = calibration;
  site["op"] = s.op_name;
  site["target"] = s.target;
  site["plugin"] = q.algorithm().name;
  site["quant_min"] = cal.quant_min;
  site["quant_max"] = cal.quant_max;
  site["sqnr_db"] = number_or_null(q.sqnr_db(id));
  site["local_sqnr_db"] = number_or_null(q.local_sqnr_db(id));
  site["state"] = state_entry(q, id);
  return site;
}

}  // namespace

void ExportCalibrationPass::run(RunContext& c) {
  json calibration = json::object();
  for (const auto& w : c.wrapped) {
    QuantizerInstance& q = w->quantizer();
    if (!(q.algorithm().capabilities & SHRINK_CAP_EXPORT)) continue;
    for (std::size_t k = 0; k < w->sites().size(); ++k) {
      const PlannedSite& s = w->sites()[k];
      const Calibration cal = q.export_site(w->site_ids()[k]);
      const json entry = calibration_entry(cal);
      calibration[s.op_name][s.target] = entry;
      c.sites.push_back(site_entry(q, s, w->site_ids()[k], entry, cal));
    }
  }
  std::filesystem::create_directories(c.staging);
  write_json(std::filesystem::path(c.staging) / "calibration.json", calibration);
}

}  // namespace shrink
