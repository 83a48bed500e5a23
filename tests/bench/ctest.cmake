# `dsinfer bench gemv|gemm --json` on small shapes: well-formed, self-consistent measurements.
add_test(NAME bench_linear_cli
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/bench/bench_linear_test.py $<TARGET_FILE:dsinfer>)
set_tests_properties(bench_linear_cli PROPERTIES LABELS integration TIMEOUT 60)
