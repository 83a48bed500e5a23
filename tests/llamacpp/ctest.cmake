# dsinfer against llama.cpp itself: files each writes run in the other, logits compared, real
# llama.cpp quantisations against the NumPy reference (check_llamacpp.py). The oracle is built
# by scripts/llamacpp.sh (scripts/test.sh runs it) into build/llamacpp.
add_test(NAME llamacpp_compat
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/llamacpp/check_llamacpp.py
    --dsinfer $<TARGET_FILE:dsinfer> --oracle ${CMAKE_SOURCE_DIR}/build/llamacpp/bin/llama_oracle
    --work ${CMAKE_BINARY_DIR}/llamacpp_compat)
set_tests_properties(llamacpp_compat PROPERTIES LABELS reference TIMEOUT 900)
