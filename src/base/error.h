// Errors: one exception type for bad input, and always-on invariant checks.
//
// Bad input (a file, a config field, a request parameter) raises `dsinfer::Error` whose
// message names the culprit. Exceptions stop at the CLI/server boundary, where they become
// an exit code or an HTTP error. `DSINFER_CHECK` guards internal invariants: a failure is a
// bug, so it prints the location and aborts. `DSINFER_DCHECK` is the same for hot paths and
// is compiled only into debug/sanitizer builds.
#pragma once

#include <stdexcept>
#include <string>

namespace dsinfer {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void CheckFailed(const char* file, int line, const char* expr, const std::string& msg);

}  // namespace dsinfer

#define DSINFER_CHECK(cond, ...)                                                        \
  do {                                                                                  \
    if (!(cond)) [[unlikely]]                                                           \
      ::dsinfer::CheckFailed(__FILE__, __LINE__, #cond, ::std::string{"" __VA_ARGS__}); \
  } while (0)

#if defined(DSINFER_DEBUG_CHECKS) || !defined(NDEBUG)
#define DSINFER_DCHECK(cond, ...) DSINFER_CHECK(cond, __VA_ARGS__)
#else
#define DSINFER_DCHECK(cond, ...) \
  do {                            \
  } while (0)
#endif
