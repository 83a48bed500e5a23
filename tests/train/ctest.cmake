# tools/train: the whole training pipeline at tiny sizes (tokenizer, data, the dense, indexer
# warm-up and sparse stages, export, dsinfer's logits equal to the PyTorch model's in dense and
# DSA mode), then the recipe's bookkeeping (tests/train/stages_check.py).
add_test(NAME train_smoke
  COMMAND sh -c "DSINFER=\"$0\" ${CMAKE_SOURCE_DIR}/tools/train/train.sh --smoke --threads 1 \
    --work ${CMAKE_BINARY_DIR}/train-smoke --out ${CMAKE_BINARY_DIR}/train-smoke/model \
    > ${CMAKE_BINARY_DIR}/train-smoke.log 2>&1; rc=$?; cat ${CMAKE_BINARY_DIR}/train-smoke.log; \
    [ $rc -eq 0 ] && ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/train/stages_check.py \
    ${CMAKE_BINARY_DIR}/train-smoke ${CMAKE_BINARY_DIR}/train-smoke.log $0"
    $<TARGET_FILE:dsinfer>)
set_tests_properties(train_smoke PROPERTIES LABELS integration TIMEOUT 600)
