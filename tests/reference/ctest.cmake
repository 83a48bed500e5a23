# NumPy reference of the forward pass (dsv32_ref.py, safetensors_np.py): its own self-tests.
add_test(NAME reference_selftest
  COMMAND ${DSINFER_PYTHON} -m unittest discover -s ${CMAKE_SOURCE_DIR}/tests/reference -p "test_*.py")
set_tests_properties(reference_selftest PROPERTIES LABELS reference TIMEOUT 300)

# `dsinfer inspect --json --checksums` against the NumPy checkpoint writer: every tensor's name,
# dtype, shape, nbytes and FNV-1a 64 (k_norm BF16 and F32); a missing required tensor → exit 2
# naming it.
add_test(NAME reference_check_inspect
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/reference/check_inspect.py $<TARGET_FILE:dsinfer> --f32-norms)
set_tests_properties(reference_check_inspect PROPERTIES LABELS integration TIMEOUT 300)

# The generator's tiny preset (vocab 1024) through the NumPy reference: loads, activations O(1),
# router decisions far from f32 near-ties (check_gen_tiny.py).
add_test(NAME reference_gen_tiny
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/reference/check_gen_tiny.py $<TARGET_FILE:dsinfer>)
set_tests_properties(reference_gen_tiny PROPERTIES LABELS integration TIMEOUT 300)

# The C++ GGUF reader and block decoders (`dsinfer gguf-dump`) against the NumPy ones
# (gguf_np.py): every metadata type, F32/F16/BF16/Q8_0/Q4_K/Q5_K/Q6_K tensors with edge-case
# blocks, v3 (alignment 32 and 64) and v2; values bit-identical (check_gguf.py).
add_test(NAME reference_check_gguf
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/reference/check_gguf.py $<TARGET_FILE:dsinfer>)
set_tests_properties(reference_check_gguf PROPERTIES LABELS integration TIMEOUT 120)
