# The ThreadSanitizer build (preset `tsan`, DSINFER_TSAN=ON), included after find_package(OpenMP).
#
# TSan sees only the synchronisation of instrumented code and of the pthread calls it
# intercepts. GCC's OpenMP runtime (libgomp) synchronises its teams with its own futex-based
# barriers, so every parallel region looks like a race to TSan (false positives by the
# hundred). LLVM's runtime (libomp) instead reports its barriers, task dependences and locks
# through the OpenMP tools interface (OMPT), and LLVM's Archer tool (libarcher.so, shipped with
# libomp in Debian's libomp-14-dev) turns those reports into TSan annotations. So this build
# needs clang (whose -fopenmp links libomp) and links Archer into every test executable
# (`dsinfer_archer`): libomp finds the tool's `ompt_start_tool` in the process, as the OpenMP
# specification allows, without OMP_TOOL_LIBRARIES. Check it is active with
# ARCHER_OPTIONS=verbose=1 (it prints "Archer detected OpenMP application with TSan").
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "DSINFER_TSAN needs clang (preset tsan): with GCC, OpenMP is libgomp, "
                      "whose barriers TSan cannot see (false races)")
endif()
if(NOT "omp" IN_LIST OpenMP_CXX_LIB_NAMES)
  message(FATAL_ERROR "DSINFER_TSAN needs LLVM's OpenMP runtime libomp (Debian: libomp-dev); "
                      "found: ${OpenMP_CXX_LIB_NAMES}")
endif()
get_filename_component(DSINFER_OMP_DIR "${OpenMP_omp_LIBRARY}" DIRECTORY)
find_library(DSINFER_ARCHER_LIBRARY archer HINTS "${DSINFER_OMP_DIR}" NO_DEFAULT_PATH)
if(NOT DSINFER_ARCHER_LIBRARY)
  message(FATAL_ERROR "DSINFER_TSAN: LLVM's Archer tool (libarcher.so) is not next to "
                      "${OpenMP_omp_LIBRARY} (Debian: libomp-14-dev ships it)")
endif()
message(STATUS "ThreadSanitizer with libomp ${OpenMP_omp_LIBRARY} and Archer "
               "${DSINFER_ARCHER_LIBRARY}")
# --no-as-needed: nothing references the tool's symbols, but libomp must find it loaded.
add_library(dsinfer_archer INTERFACE)
target_link_libraries(dsinfer_archer INTERFACE "-Wl,--no-as-needed" "${DSINFER_ARCHER_LIBRARY}"
                                               "-Wl,--as-needed")
