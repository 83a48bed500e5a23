// Linked into every test executable of the ThreadSanitizer build (preset tsan; cmake/tsan.cmake):
// the TSan options the suite runs with, so `ctest` needs no environment. TSAN_OPTIONS, when
// set, is applied after these and wins.
//   ignore_noninstrumented_modules: accesses inside uninstrumented libraries (libomp, libstdc++,
//     libgtest) are not checked; their synchronisation is still seen (pthread interceptors,
//     Archer's OpenMP annotations). Archer's documentation asks for it (the runtime's own
//     internals would otherwise be reported).
//   halt_on_error=0: every race of a test is reported; the test still fails (exit code 66).
//   second_deadlock_stack: lock-order reports show where both locks were taken.
extern "C" const char* __tsan_default_options() {
  return "ignore_noninstrumented_modules=1:halt_on_error=0:second_deadlock_stack=1";
}
