// A failure inside a TorchScript forward as one line the user sees: a plugin's (a quantize call
// runs in the model's graph as the shrink::quantize op), or a lost rank's (a synchronized
// BatchNorm's all-reduce, a plugin's collective).
//
// The host throws shrink::Error with one line naming the plugin and site, or the rank; the
// TorchScript interpreter then rethrows it as a std::runtime_error (or c10::Error) wrapped in a
// traceback that names neither. The line is recorded on the failing thread when it is thrown, so
// that a caller catching the wrapped exception can get it back.
#pragma once

#include <exception>
#include <string>

namespace shrink {

// Records `line` on this thread and throws shrink::Error(line).
[[noreturn]] void throw_one_line(const std::string& line);

// When `e` carries the last line recorded on this thread (the interpreter's wrapping of it, or
// the error itself), throws shrink::Error with that line and forgets it; otherwise returns.
// Use in a catch block around a model's forward or backward:
//   catch (const std::exception& e) { rethrow_one_line(e); throw; }
void rethrow_one_line(const std::exception& e);

// The first line of `text` (LibTorch's messages go on with backtraces and source excerpts).
std::string first_line(const std::string& text);

// The line to print for `e`: the recorded line when `e` carries it, else its message
// (without LibTorch's C++ backtrace).
std::string error_line(const std::exception& e);

}  // namespace shrink
