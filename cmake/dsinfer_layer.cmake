# dsinfer_layer(NAME deps... [DIR dir]) — one static library per source folder.
# Sources are globbed so that adding a file needs no CMake edit; a folder without
# sources yet becomes an INTERFACE library so that dependents still link.
function(dsinfer_layer name)
  cmake_parse_arguments(ARG "" "DIR" "" ${ARGN})
  if(NOT ARG_DIR)
    set(ARG_DIR src/${name})
  endif()
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/${ARG_DIR}/*.cc)
  list(FILTER srcs EXCLUDE REGEX "_test\\.cc$")
  if(srcs)
    add_library(dsinfer_${name} STATIC ${srcs})
    target_include_directories(dsinfer_${name} PUBLIC ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR})
    target_link_libraries(dsinfer_${name} PUBLIC ${ARG_UNPARSED_ARGUMENTS})
  else()
    add_library(dsinfer_${name} INTERFACE)
    target_include_directories(dsinfer_${name} INTERFACE ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR})
    target_link_libraries(dsinfer_${name} INTERFACE ${ARG_UNPARSED_ARGUMENTS})
  endif()
endfunction()

# dsinfer_unit_tests(LAYER deps...) — one GoogleTest binary per tests/unit/LAYER folder.
function(dsinfer_unit_tests layer)
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/${layer}/*_test.cc)
  if(NOT srcs)
    return()
  endif()
  add_executable(${layer}_tests ${srcs})
  target_link_libraries(${layer}_tests PRIVATE ${ARGN} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${layer}_tests PRIVATE
    DSINFER_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
    DSINFER_BINARY_DIR="${CMAKE_BINARY_DIR}")
  # A binary's test files are compiled as one translation unit (unity build): GoogleTest,
  # nlohmann/json and the engine's headers are parsed and their templates instantiated once per
  # binary instead of once per file. The suite builds every test binary three times (Release,
  # ASan/UBSan, TSan); this took the Release test objects from ~435 s to ~140 s of compile time
  # on the 2-core machine (a precompiled header per binary, used before, only reached ~435 s).
  # So the files of one folder share a namespace: names in their anonymous namespaces must
  # differ (the shared ones live in the folder's *_util.h).
  set_target_properties(${layer}_tests PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 0)
  # The test code itself is compiled at -O1 in Release (the code under test keeps -O3): its
  # time goes to GoogleTest's and nlohmann/json's templates, and -O1 cuts a third of it.
  target_compile_options(${layer}_tests PRIVATE $<$<CONFIG:Release>:-O1>)
  if(DSINFER_TSAN)  # cmake/tsan.cmake: Archer for OpenMP, the suite's TSan options
    target_sources(${layer}_tests PRIVATE ${CMAKE_SOURCE_DIR}/tests/tsan_options.cc)
    target_link_libraries(${layer}_tests PRIVATE dsinfer_archer)
  endif()
  gtest_discover_tests(${layer}_tests DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS unit ENVIRONMENT "DSINFER_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()
