# Black-box test of `dsinfer serve` with the official openai npm client (tools/npm): chat,
# streaming + include_usage, thinking on/off, a tool-call round trip, usage/cost, /v1/models
# and every error case. The driver starts and always stops the server (bounded waits).
# Release builds only: under ASan the model decodes ~10x slower and this test would take
# minutes; the handlers and scheduler run under ASan in tests/unit/server.
if(NOT DSINFER_SANITIZE)
  add_test(NAME server_openai_client
    COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/server/run_openai_test.py
            $<TARGET_FILE:dsinfer> ${DSINFER_NODE} ${CMAKE_SOURCE_DIR}
            ${CMAKE_BINARY_DIR}/test_server_openai)
  set_tests_properties(server_openai_client PROPERTIES LABELS integration TIMEOUT 300)
  # Bounded load test: 32 concurrent streaming clients, --parallel 8, a KV budget of 24 pages
  # of the 1-layer test model in the f32 layout (28,928 B each), outputs equal to one-at-a-time
  # runs.
  add_test(NAME server_load
    COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/server/run_openai_test.py
            $<TARGET_FILE:dsinfer> ${DSINFER_NODE} ${CMAKE_SOURCE_DIR}
            ${CMAKE_BINARY_DIR}/test_server_load load_test.mjs
            --parallel 8 --queue 64 --kv-budget 694272 --kv-cache f32)
  set_tests_properties(server_load PROPERTIES LABELS integration TIMEOUT 300)
endif()
# `serve --kv-cache f32|bf16|fp8 --attention dsa|dense`: tokens a --kv-budget admits vs bytes per
# token computed in Python from config.json (FP8 admits 3.5x the tokens of f32, dense).
add_test(NAME server_kv_budget
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/server/kv_budget_test.py
          $<TARGET_FILE:dsinfer> ${CMAKE_BINARY_DIR}/test_server_kv_budget)
set_tests_properties(server_kv_budget PROPERTIES LABELS integration TIMEOUT 300)
# `serve --spec mtp --draft 1|2`: greedy completions identical to the server without it (short,
# past index_topk, prefix-cache hit, batched); drafts, acceptance and tokens/step in /metrics.
add_test(NAME server_spec_mtp
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/server/spec_server_test.py
          $<TARGET_FILE:dsinfer> ${CMAKE_BINARY_DIR}/test_server_spec)
set_tests_properties(server_spec_mtp PROPERTIES LABELS integration TIMEOUT 300)
