// The ThreadSanitizer build's canary (preset tsan; tests/CMakeLists.txt): a clean TSan run of the
// unit tests proves nothing unless TSan sees this process's threads. Modes:
//   thread      two std::threads write one int without synchronisation: TSan must report a race;
//   openmp      two OpenMP threads do the same in a parallel region: TSan must report it (the
//               threads libomp starts are seen);
//   openmp-ok   a parallel region whose threads write their own slots, then a barrier, then one
//               thread reads all slots: no race, so TSan must stay silent. Without Archer's
//               annotations (cmake/tsan.cmake) libomp's barrier is invisible to TSan and this
//               reports a false race, as every parallel region of the runtime tests would.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <thread>

namespace {

int shared_value = 0;  // written by both threads in the racy modes

void Write(int n) {
  for (int i = 0; i < n; ++i) shared_value = shared_value + 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: tsan_canary thread|openmp|openmp-ok\n");
    return 2;
  }
  if (std::strcmp(argv[1], "thread") == 0) {
    std::thread a(Write, 1000);
    std::thread b(Write, 1000);
    a.join();
    b.join();
  } else if (std::strcmp(argv[1], "openmp") == 0) {
#pragma omp parallel num_threads(2)
    Write(1000);
  } else if (std::strcmp(argv[1], "openmp-ok") == 0) {
    int slots[2] = {0, 0};
    int sum = 0;
#pragma omp parallel num_threads(2)
    {
      slots[omp_get_thread_num()] = omp_get_thread_num() + 1;
#pragma omp barrier
#pragma omp single
      sum = slots[0] + slots[1];
    }
    shared_value = sum;
  } else {
    std::fprintf(stderr, "tsan_canary: unknown mode '%s'\n", argv[1]);
    return 2;
  }
  std::printf("shared_value %d\n", shared_value);
  return 0;
}
