#include <shrink/core/error.hpp>
#include <shrink/core/one_line_error.hpp>

#include <c10/util/Exception.h>

namespace shrink {
namespace {

// Thread-local: the interpreter and (on CPU) the autograd engine run a failing call on the thread
// that catches its exception.
thread_local std::string t_last_line;

std::string message_of(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    return c10_error->what_without_backtrace();
  }
  return e.what();
}

bool carries_last_line(const std::string& message) {
  return !t_last_line.empty() && message.find(t_last_line) != std::string::npos;
}

}  // namespace

void throw_one_line(const std::string& line) {
  t_last_line = line;
  throw Error(line);
}

void rethrow_one_line(const std::exception& e) {
  if (!carries_last_line(message_of(e))) return;
  std::string line;
  line.swap(t_last_line);
  throw Error(line);
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::string error_line(const std::exception& e) {
  const std::string message = message_of(e);
  return carries_last_line(message) ? t_last_line : message;
}

}  // namespace shrink
