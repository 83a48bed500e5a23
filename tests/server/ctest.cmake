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
# Hardening (issue 16), each scenario against its own server on the tiny model: SIGTERM drains
# and exits 0; a non-streaming client that leaves cancels its generation; out-of-range numbers
# are 400s naming the field; 200 concurrent clients all answered or refused with Retry-After;
# 50 slowloris connections leave /health answering; max-size bodies stay within the memory bound.
if(NOT DSINFER_SANITIZE)
  foreach(scenario sigterm disconnect numbers load200 slowloris memory)
    add_test(NAME server_hardening_${scenario}
      COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/server/hardening_test.py
              $<TARGET_FILE:dsinfer> ${CMAKE_BINARY_DIR}/test_server_hardening ${scenario})
    set_tests_properties(server_hardening_${scenario} PROPERTIES LABELS integration TIMEOUT 180)
  endforeach()
endif()

# The web chat page (GET /) in headless chromium (Debian's package, driven by the pinned
# playwright-core): key prompt, streaming, multi-turn, thinking, tool calls, stop, usage, all
# compared with the API's answers for the same requests. Screenshots: test-artifacts/webchat.
# Skipped (77) only where apt has no chromium at all; a missing but installable chromium fails.
if(NOT DSINFER_SANITIZE)
  add_test(NAME server_webchat
    COMMAND ${CMAKE_COMMAND} -E env DSINFER_NEEDS_CHROMIUM=1
            DSINFER_ARTIFACTS=${CMAKE_BINARY_DIR}/test-artifacts/webchat
            ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/server/run_openai_test.py
            $<TARGET_FILE:dsinfer> ${DSINFER_NODE} ${CMAKE_SOURCE_DIR}
            ${CMAKE_BINARY_DIR}/test_server_webchat webchat_test.mjs)
  set_tests_properties(server_webchat PROPERTIES LABELS integration TIMEOUT 180
                       SKIP_RETURN_CODE 77)
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
