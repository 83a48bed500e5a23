# dsinfer against llama.cpp itself: files each writes run in the other, logits compared, real
# llama.cpp quantisations against the NumPy reference (check_llamacpp.py). The oracle is built
# by scripts/llamacpp.sh (scripts/test.sh runs it) into build/llamacpp.
add_test(NAME llamacpp_compat
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/llamacpp/check_llamacpp.py
    --dsinfer $<TARGET_FILE:dsinfer> --oracle ${CMAKE_SOURCE_DIR}/build/llamacpp/bin/llama_oracle
    --work ${CMAKE_BINARY_DIR}/llamacpp_compat)
set_tests_properties(llamacpp_compat PROPERTIES LABELS reference TIMEOUT 900)

# gguf_np's block decoders against ggml's own (`llama_oracle dequant`), bit for bit: edge blocks
# of every type gguf_np reads, and every tensor of llama.cpp's Q8_0, Q4_K_M, Q4_0, Q3_K_M, Q2_K,
# Q5_K_M, Q6_K and IQ4_XS quantisations of a small llama-architecture file, fallbacks (Q5_0,
# Q5_1, Q4_0, Q8_0, IQ4_NL) included (check_dequant.py; ~1 s).
add_test(NAME llamacpp_dequant
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/llamacpp/check_dequant.py
    --oracle ${CMAKE_SOURCE_DIR}/build/llamacpp/bin/llama_oracle --work ${CMAKE_BINARY_DIR}/llamacpp_dequant)
set_tests_properties(llamacpp_dequant PROPERTIES LABELS reference TIMEOUT 120)
