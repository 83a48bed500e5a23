# GGUF models end to end: quantize → logits vs the safetensors checkpoint (F32), vs the NumPy
# reference on the dequantised weights (Q8_0, Q4_K_M), tokenizer ids, bad input (check_gguf_model.py).
add_test(NAME gguf_model
  COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/gguf/check_gguf_model.py
    --dsinfer $<TARGET_FILE:dsinfer> --work ${CMAKE_BINARY_DIR}/gguf_model)
set_tests_properties(gguf_model PROPERTIES LABELS reference TIMEOUT 900)
