# `dsinfer run` (ids, text, chat) checked against `logits`, `chat-template` and `tokenize`.
add_test(NAME run_cli
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/run/run_cli_test.py
    --dsinfer $<TARGET_FILE:dsinfer> --work ${CMAKE_BINARY_DIR}/run_cli)
set_tests_properties(run_cli PROPERTIES LABELS integration TIMEOUT 300)
