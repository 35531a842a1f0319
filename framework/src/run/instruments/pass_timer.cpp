#include <shrink/core/logging.hpp>
#include <shrink/run/context.hpp>
#include <shrink/run/instruments.hpp>
#include <shrink/run/pass.hpp>

namespace shrink {

void PassTimer::after_pass(const Pass& pass, RunContext& context, PassMode mode, double seconds) {
  const bool restored = mode == PassMode::kRestore;
  context.pass_seconds.push_back(
      {{"pass", pass.name()}, {"seconds", seconds}, {"restored", restored}});
  logging::debug("pass " + pass.name() + (restored ? " (restored)" : "") + " took " +
                 std::to_string(seconds) + " s");
}

}  // namespace shrink
