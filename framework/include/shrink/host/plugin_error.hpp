// A plugin's failure as one line the user sees, even when it happened inside a TorchScript forward.
//
// A quantize call runs inside the model's graph (the shrink::quantize op). When it fails, the host
// throws shrink::Error with one line naming the plugin, the site and the call; the TorchScript
// interpreter then rethrows it as a std::runtime_error (or c10::Error) wrapped in a traceback that
// names neither. The host records the line on the failing thread when it throws, so that a caller
// catching the wrapped exception can get the plugin's own line back.
#pragma once

#include <exception>
#include <string>

namespace shrink {

// Records `line` on this thread and throws shrink::Error(line).
[[noreturn]] void throw_plugin_error(const std::string& line);

// When `e` carries the last line recorded on this thread (the interpreter's wrapping of it, or
// the error itself), throws shrink::Error with that line and forgets it; otherwise returns.
// Use in a catch block around a model's forward or backward:
//   catch (const std::exception& e) { rethrow_plugin_error(e); throw; }
void rethrow_plugin_error(const std::exception& e);

// The line to print for `e`: the recorded plugin line when `e` carries it, else its message
// (without LibTorch's C++ backtrace).
std::string error_line(const std::exception& e);

}  // namespace shrink
