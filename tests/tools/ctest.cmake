# CLI integration tests of gen-model / inspect / the default model (tests/tools/cli_test.py).
foreach(case gen_and_inspect fp8_blocks_independent_reader missing_tensor refuses_overwrite default_model)
  add_test(NAME cli_${case}
    COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/tools/cli_test.py $<TARGET_FILE:dsinfer>
            ${CMAKE_BINARY_DIR}/test_scratch/cli_${case} ${case})
  set_tests_properties(cli_${case} PROPERTIES LABELS integration TIMEOUT 120)
endforeach()
