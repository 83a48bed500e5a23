# Expert parallelism over MPI (docs/mpi.md): registered only when CMake found MPI and built
# dsinfer-mpi (scripts/setup.sh installs Open MPI, so scripts/test.sh always runs them).
if(TARGET dsinfer-mpi)
  foreach(t mpi_logits mpi_killed_rank mpi_memory mpi_run mpi_share)
    add_test(NAME ${t}
      COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/mpi/${t}_test.py
        --dsinfer $<TARGET_FILE:dsinfer> --dsinfer-mpi $<TARGET_FILE:dsinfer-mpi>
        --mpirun ${MPIEXEC_EXECUTABLE} --work ${CMAKE_BINARY_DIR}/${t})
  endforeach()
  set_tests_properties(mpi_logits PROPERTIES LABELS integration TIMEOUT 600)
  set_tests_properties(mpi_killed_rank mpi_memory mpi_run mpi_share PROPERTIES
                       LABELS integration TIMEOUT 300)
  # `serve` across ranks against one process, through the openai npm client (tools/npm).
  add_test(NAME mpi_serve
    COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/mpi/mpi_serve_test.py
      --dsinfer $<TARGET_FILE:dsinfer> --dsinfer-mpi $<TARGET_FILE:dsinfer-mpi>
      --mpirun ${MPIEXEC_EXECUTABLE} --work ${CMAKE_BINARY_DIR}/mpi_serve
      --node ${DSINFER_NODE} --source ${CMAKE_SOURCE_DIR})
  set_tests_properties(mpi_serve PROPERTIES LABELS integration TIMEOUT 400)
endif()
