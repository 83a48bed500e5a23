// The memory a new model may use on this machine, for the load-time check that its weights fit
// (docs/inspect.md "Memory"). Thread-safe.
#pragma once

#include <cstdint>

namespace dsinfer {

// MemAvailable of /proc/meminfo in bytes (free memory plus the page cache and the other memory
// the kernel can reclaim; a checkpoint already in the page cache counts as available), or 0
// when unknown. DSINFER_MEMORY_AVAILABLE=BYTES (a decimal integer) replaces the figure: a cap
// below what the machine has (e.g. to leave room for other jobs), and how the tests reach the
// refusal; any other value throws Error naming the variable.
uint64_t MemoryAvailable();

}  // namespace dsinfer
