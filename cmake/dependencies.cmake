# Every dependency comes from the system's packages; nothing is downloaded at build time.
# scripts/install-deps.sh installs the Debian packages named in the messages below.

find_package(OpenMP REQUIRED COMPONENTS CXX)

set(BLA_VENDOR OpenBLAS)
find_package(BLAS)
find_path(MOM_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas x86_64-linux-gnu/openblas-pthread)
if(NOT BLAS_FOUND OR NOT MOM_CBLAS_INCLUDE_DIR)
  message(FATAL_ERROR "OpenBLAS (CBLAS) not found: apt-get install libopenblas-dev")
endif()

find_package(CLI11 CONFIG)
if(NOT CLI11_FOUND)
  message(FATAL_ERROR "CLI11 not found: apt-get install libcli11-dev")
endif()

find_package(nlohmann_json CONFIG)
if(NOT nlohmann_json_FOUND)
  message(FATAL_ERROR "nlohmann-json not found: apt-get install nlohmann-json3-dev")
endif()

find_package(GTest)
if(NOT GTest_FOUND)
  message(FATAL_ERROR "GoogleTest not found: apt-get install libgtest-dev")
endif()
