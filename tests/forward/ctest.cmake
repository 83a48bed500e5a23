# The C++ forward pass against the NumPy reference (tiny checkpoints, all schedules and modes).
add_test(NAME forward_vs_reference
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/forward/compare_reference.py
    --dsinfer $<TARGET_FILE:dsinfer>
    --ref ${CMAKE_SOURCE_DIR}/tests/reference/dsv32_ref.py
    --python ${DSINFER_PYTHON}
    --work ${CMAKE_BINARY_DIR}/forward_vs_reference)
set_tests_properties(forward_vs_reference PROPERTIES LABELS reference TIMEOUT 900)

# Bad command-line input gives exit status 1 with a message naming the culprit.
add_test(NAME forward_cli_errors
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/forward/cli_errors.py
    --dsinfer $<TARGET_FILE:dsinfer> --work ${CMAKE_BINARY_DIR}/forward_cli_errors)
set_tests_properties(forward_cli_errors PROPERTIES LABELS integration TIMEOUT 300)

# bf16 numerics (`--numerics bf16`) against the NumPy reference's bf16 numerics: short sequences,
# FP8 and BF16 weights, prefill / decode / chunked / dense, at the tolerance derived in
# compare_reference.py (and the reference's own bf16-vs-f32 distance, which must exceed it).
add_test(NAME forward_vs_reference_bf16
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/forward/compare_reference.py
    --dsinfer $<TARGET_FILE:dsinfer>
    --ref ${CMAKE_SOURCE_DIR}/tests/reference/dsv32_ref.py
    --python ${DSINFER_PYTHON}
    --work ${CMAKE_BINARY_DIR}/forward_vs_reference_bf16
    --numerics bf16)
set_tests_properties(forward_vs_reference_bf16 PROPERTIES LABELS reference TIMEOUT 300)
