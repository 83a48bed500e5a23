#include "base/meminfo.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/error.h"

namespace dsinfer {

uint64_t MemoryAvailable() {
  if (const char* v = std::getenv("DSINFER_MEMORY_AVAILABLE")) {
    const std::string s(v);
    const bool digits = !s.empty() && s.size() <= 19 &&
                        s.find_first_not_of("0123456789") == std::string::npos;
    if (!digits)
      throw Error("DSINFER_MEMORY_AVAILABLE='" + s + "' is not a number of bytes");
    return std::stoull(s);
  }
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
  std::fclose(f);
  return kb * 1024ull;
}

}  // namespace dsinfer
