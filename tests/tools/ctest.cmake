# CLI integration tests of gen-model / inspect / the default model (tests/tools/cli_test.py).
foreach(case gen_and_inspect fp8_blocks_independent_reader missing_tensor refuses_overwrite default_model)
  add_test(NAME cli_${case}
    COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/tools/cli_test.py $<TARGET_FILE:dsinfer>
            ${CMAKE_BINARY_DIR}/test_scratch/cli_${case} ${case})
  set_tests_properties(cli_${case} PROPERTIES LABELS integration TIMEOUT 120)
endforeach()

# inspect's verdict equals whether logits / run load the model, for every way a checkpoint can be
# stored or damaged (tests/tools/verdicts_test.py, issue 16).
add_test(NAME cli_inspect_verdicts
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/tools/verdicts_test.py $<TARGET_FILE:dsinfer>
          ${CMAKE_BINARY_DIR}/test_scratch/cli_inspect_verdicts)
set_tests_properties(cli_inspect_verdicts PROPERTIES LABELS integration TIMEOUT 300)
