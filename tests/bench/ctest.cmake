# `dsinfer bench layer` end to end on a generated tiny model (tests/bench/bench_layer_cli_test.py).
foreach(case json_and_plot table bad_input preset_cache main_job)
  add_test(NAME bench_layer_${case}
    COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/bench/bench_layer_cli_test.py
            $<TARGET_FILE:dsinfer> ${CMAKE_BINARY_DIR}/test_scratch/bench_layer_${case} ${case})
  set_tests_properties(bench_layer_${case} PROPERTIES LABELS integration TIMEOUT 120)
endforeach()
