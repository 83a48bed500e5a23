#include "base/threads.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <bit>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "base/error.h"

namespace dsinfer {
namespace {

std::atomic<int> g_threads{0};  // 0: not set
std::mutex g_sites_mu;
ThreadSite* g_sites = nullptr;  // every site created so far (a list through next_)

// The default when --threads is not given: OMP_NUM_THREADS if it is a positive integer (the
// user asked for it), else the cores the process may run on.
int DefaultThreads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n >= 1 && n <= 4096) return static_cast<int>(n);
  }
  return AvailableCores();
}

thread_local ThreadRole t_role = ThreadRole::kOther;

bool InitStats() {
  const char* path = std::getenv("DSINFER_THREAD_STATS");
  if (path == nullptr || *path == '\0') return false;
  std::atexit(WriteThreadStats);
  // SIGTERM (how tests stop the server): blocked here, during static initialisation, so every
  // thread created later inherits the mask, and taken by one thread that writes and exits.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    sigwait(&set, &sig);
    WriteThreadStats();
    std::_Exit(128 + SIGTERM);
  }).detach();
  return true;
}

}  // namespace

const bool g_thread_stats = InitStats();

namespace {
// Static initialisation runs on the main thread.
const bool g_main_role = (SetThreadRole(ThreadRole::kMain), true);
}  // namespace

const char* ThreadRoleName(ThreadRole role) {
  switch (role) {
    case ThreadRole::kMain:
      return "main";
    case ThreadRole::kEngine:
      return "engine";
    case ThreadRole::kHttp:
      return "http";
    case ThreadRole::kOther:
      break;
  }
  return "other";
}

void SetThreadRole(ThreadRole role) { t_role = role; }

ThreadRole CurrentThreadRole() { return t_role; }

int AvailableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

void SetComputeThreads(int n) {
  if (n < 1) throw Error("--threads: need at least 1 thread, got " + std::to_string(n));
  g_threads.store(n);
  omp_set_num_threads(n);
}

int ComputeThreads() {
  const int n = g_threads.load();
  return n > 0 ? n : DefaultThreads();
}

void UseComputeThreads() { omp_set_num_threads(ComputeThreads()); }

ThreadSite::ThreadSite(const char* name) : name_(name) {
  std::lock_guard lock(g_sites_mu);
  next_ = g_sites;
  g_sites = this;
}

void ThreadSite::Note() {
  const int member = omp_get_thread_num();
  if (member == 0)  // the thread that started the region (its team's master)
    started_by_.fetch_or(1u << static_cast<int>(t_role), std::memory_order_relaxed);
  seen_.fetch_or(uint64_t{1} << std::min(member, 63), std::memory_order_relaxed);
  const int team = omp_get_num_threads();
  int seen_team = max_team_.load(std::memory_order_relaxed);
  while (team > seen_team &&
         !max_team_.compare_exchange_weak(seen_team, team, std::memory_order_relaxed)) {
  }
}

void WriteThreadStats() {
  const char* path = std::getenv("DSINFER_THREAD_STATS");
  if (path == nullptr || *path == '\0') return;
  std::FILE* f = std::fopen(path, "w");
  if (f == nullptr) return;
  std::fprintf(f, "{\"compute_threads\": %d, \"available_cores\": %d, \"sites\": [",
               ComputeThreads(), AvailableCores());
  std::lock_guard lock(g_sites_mu);
  for (const ThreadSite* s = g_sites; s != nullptr; s = s->next_) {
    std::fprintf(f, "%s{\"site\": \"%s\", \"threads\": %d, \"max_team\": %d, \"started_by\": [",
                 s == g_sites ? "" : ", ", s->name_, std::popcount(s->seen_.load()),
                 s->max_team_.load());
    const char* sep = "";
    for (int r = 0; r < kThreadRoleCount; ++r)
      if (s->started_by_.load() & (1u << r)) {
        std::fprintf(f, "%s\"%s\"", sep, ThreadRoleName(static_cast<ThreadRole>(r)));
        sep = ", ";
      }
    std::fprintf(f, "]}");
  }
  std::fprintf(f, "]}\n");
  std::fclose(f);
}

}  // namespace dsinfer
