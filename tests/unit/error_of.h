// Shared by the unit tests: the message of the dsinfer::Error a callable throws.
#pragma once

#include <string>

#include "base/error.h"

namespace dsinfer {

// The message of the Error `f` throws, or "(no error)" when it returns normally. Exceptions
// other than Error propagate (a test that expects a clear error must not accept a crash).
template <class F>
std::string ErrorOf(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace dsinfer
