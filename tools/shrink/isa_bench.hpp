// Timing under another oneDNN instruction set, for `shrink run`'s latency pass. oneDNN takes its
// instruction set once per process (ONEDNN_MAX_CPU_ISA caps it), so the models are timed by this
// executable started again as `shrink bench` with the variable set.
#pragma once

#include <shrink/run/context.hpp>

#include <nlohmann/json.hpp>

namespace shrink_cli {

// What `shrink bench FP32 --int8 INT8 --shape ... --batch B --threads 1 --runs R --json` prints
// (its JSON line), run with ONEDNN_MAX_CPU_ISA=request.isa. Throws shrink::Error with the child's
// last line when it fails.
nlohmann::json bench_with_isa(const shrink::IsaBench& request);

}  // namespace shrink_cli
