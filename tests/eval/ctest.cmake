# `dsinfer eval` checked against `run` (greedy answers), `chat-template` + `tokenize` (prompt
# lengths) and `logits` + NumPy (perplexity, MTP accuracy), plus bad task/text files.
add_test(NAME eval_cli
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/eval/eval_cli_test.py
    --dsinfer $<TARGET_FILE:dsinfer> --work ${CMAKE_BINARY_DIR}/eval_cli)
set_tests_properties(eval_cli PROPERTIES LABELS integration TIMEOUT 300)
