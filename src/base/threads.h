// Compute threads: how many threads every OpenMP parallel region of the process uses
// (`--threads N`; default: the cores the process may run on, from sched_getaffinity).
//
// OpenMP keeps the team size per thread, so a std::thread that runs parallel regions (the
// engine's worker) calls `UseComputeThreads()` first; the main thread gets it from
// `SetComputeThreads`. Kernels size their teams with omp_get_max_threads() or leave it to the
// `parallel` construct, so they follow the setting.
//
// Thread-use statistics, for tests: with `DSINFER_THREAD_STATS=FILE` in the environment, every
// parallel region marked with `DSINFER_NOTE_THREAD("name")` records which team members ran work
// and the largest team it ran with; the JSON is written to FILE when the process exits (also on
// SIGTERM, for the server). Without the variable a mark costs one predictable branch.
// Each site also records the roles of the threads that started it (its team member 0: the
// main thread, the engine's worker, an HTTP connection thread, or another thread), so a test
// can show that the server's HTTP threads never start a parallel region.
#pragma once

#include <atomic>
#include <cstdint>

namespace dsinfer {

// CPUs in the process's affinity mask (≥ 1).
int AvailableCores();

// Sets the compute thread count (n ≥ 1, else Error) and applies it to the calling thread.
void SetComputeThreads(int n);

// The count set by SetComputeThreads, else AvailableCores().
int ComputeThreads();

// Applies ComputeThreads() to the calling thread's OpenMP regions.
void UseComputeThreads();

// What a thread is for, as the statistics report it. Set by the thread itself.
enum class ThreadRole : uint8_t { kOther, kMain, kEngine, kHttp };
inline constexpr int kThreadRoleCount = 4;
const char* ThreadRoleName(ThreadRole role);  // "other" | "main" | "engine" | "http"
void SetThreadRole(ThreadRole role);          // the calling thread's role
ThreadRole CurrentThreadRole();

// ---- statistics ----------------------------------------------------------------------------

extern const bool g_thread_stats;  // DSINFER_THREAD_STATS is set

// One marked parallel region (a static object per site, created on first use).
class ThreadSite {
 public:
  explicit ThreadSite(const char* name);
  void Note();  // called by every team member that runs work in the region
  // Bit r set: a thread of ThreadRole r started the region (was its team member 0).
  uint32_t started_by() const { return started_by_.load(); }

 private:
  friend void WriteThreadStats();
  const char* name_;
  std::atomic<uint64_t> seen_{0};  // bit i: team member i (i ≥ 63 share bit 63) ran work
  std::atomic<int> max_team_{0};
  std::atomic<uint32_t> started_by_{0};  // bit r: a thread of ThreadRole r was team member 0
  ThreadSite* next_ = nullptr;
};

// Writes the statistics of every site to $DSINFER_THREAD_STATS (no-op without it).
void WriteThreadStats();

}  // namespace dsinfer

#define DSINFER_NOTE_THREAD(name)                       \
  do {                                                  \
    if (::dsinfer::g_thread_stats) {                    \
      static ::dsinfer::ThreadSite dsinfer_site_(name); \
      dsinfer_site_.Note();                             \
    }                                                   \
  } while (0)
