# Expert parallelism over MPI (docs/mpi.md): registered only when CMake found MPI and built
# dsinfer-mpi (scripts/setup.sh installs Open MPI, so scripts/test.sh always runs it).
if(TARGET dsinfer-mpi)
  add_test(NAME mpi_logits
    COMMAND ${DSINFER_PYTHON} ${CMAKE_SOURCE_DIR}/tests/mpi/mpi_logits_test.py
      --dsinfer $<TARGET_FILE:dsinfer> --dsinfer-mpi $<TARGET_FILE:dsinfer-mpi>
      --mpirun ${MPIEXEC_EXECUTABLE} --work ${CMAKE_BINARY_DIR}/mpi_logits)
  set_tests_properties(mpi_logits PROPERTIES LABELS integration TIMEOUT 600)
endif()
