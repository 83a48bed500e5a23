# NumPy reference of the forward pass (dsv32_ref.py, safetensors_np.py): its own self-tests.
add_test(NAME reference_selftest
  COMMAND ${DSINFER_PYTHON} -m unittest discover -s ${CMAKE_SOURCE_DIR}/tests/reference -p "test_*.py")
set_tests_properties(reference_selftest PROPERTIES LABELS reference TIMEOUT 300)
