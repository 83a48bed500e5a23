# `--threads N` on gen-model, logits, run, eval and serve: the threads every parallel region used,
# counted through DSINFER_THREAD_STATS (not timed).
if(NOT DSINFER_SANITIZE)
  add_test(NAME threads_cli
    COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/threads/threads_test.py
      --dsinfer $<TARGET_FILE:dsinfer> --work ${CMAKE_BINARY_DIR}/threads_cli)
  set_tests_properties(threads_cli PROPERTIES LABELS integration TIMEOUT 300)
endif()
