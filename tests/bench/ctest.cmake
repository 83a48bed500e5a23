# `dsinfer bench layer` end to end on a generated tiny model (tests/bench/bench_layer_cli_test.py).
foreach(case json_and_plot table verify bad_input preset_cache main_job)
  add_test(NAME bench_layer_${case}
    COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/bench/bench_layer_cli_test.py
            $<TARGET_FILE:dsinfer> ${CMAKE_BINARY_DIR}/test_scratch/bench_layer_${case} ${case})
  set_tests_properties(bench_layer_${case} PROPERTIES LABELS integration TIMEOUT 120)
endforeach()

# `dsinfer bench gemv|gemm --json` on small shapes: well-formed, self-consistent measurements.
add_test(NAME bench_linear_cli
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/bench/bench_linear_test.py $<TARGET_FILE:dsinfer>)
set_tests_properties(bench_linear_cli PROPERTIES LABELS integration TIMEOUT 120)

# `dsinfer bench model` end to end on a generated tiny model: llama-bench's test order and names,
# statistics recomputed from the JSON samples (and the markdown of the same run), token counts
# against the requested shapes, defaults and presets, bad input (tests/bench/bench_model_cli_test.py).
foreach(case output defaults bad_input)
  add_test(NAME bench_model_${case}
    COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/bench/bench_model_cli_test.py
            $<TARGET_FILE:dsinfer> ${CMAKE_BINARY_DIR}/test_scratch/bench_model_${case} ${case})
  set_tests_properties(bench_model_${case} PROPERTIES LABELS integration TIMEOUT 120)
endforeach()
