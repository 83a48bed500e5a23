# `dsinfer chat-template` reproduces DeepSeek's golden chat-encoding fixture byte for byte
# (request-level tools from a file, and tools on messages[0] from stdin).
add_test(NAME chat_template_cli_golden
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/chat/cli_chat_template_test.py
          $<TARGET_FILE:dsinfer> ${CMAKE_SOURCE_DIR}/tests/golden/chat_encoding)
set_tests_properties(chat_template_cli_golden PROPERTIES LABELS integration TIMEOUT 120)
