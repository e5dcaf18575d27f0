# Every dependency comes from the system's packages; nothing is downloaded at build time.
# scripts/install-deps.sh installs the Debian packages named in the messages below.

# MOM_DEPS_PREFIX: a folder into which Debian packages were unpacked (dpkg -x), searched before the
# system. scripts/gpu-check.sh makes one on machines that lack the packages. Debian keeps OpenBLAS in
# lib/<arch>/openblas-pthread and reaches it through alternatives links that an unpacked prefix lacks.
set(MOM_DEPS_PREFIX "" CACHE PATH "Prefix of unpacked Debian packages searched before the system")
if(MOM_DEPS_PREFIX)
  list(PREPEND CMAKE_PREFIX_PATH ${MOM_DEPS_PREFIX}/usr)
  list(PREPEND CMAKE_LIBRARY_PATH ${MOM_DEPS_PREFIX}/usr/lib/x86_64-linux-gnu/openblas-pthread)
endif()

find_package(OpenMP REQUIRED COMPONENTS CXX)

# OpenBLAS (BLAS::BLAS, MOM_BLAS_OPENMP, MOM_CBLAS_INCLUDE_DIR): the same discovery as the installed
# package's. MOM_BLAS_OPENMP tells the kernels which build they were built with.
include(${CMAKE_CURRENT_LIST_DIR}/momFindOpenBLAS.cmake)
if(NOT MOM_OPENBLAS_FOUND)
  message(FATAL_ERROR "OpenBLAS (CBLAS) not found: apt-get install libopenblas-openmp-dev")
elseif(MOM_BLAS_OPENMP)
  message(STATUS "mom: OpenBLAS, OpenMP build (${MOM_OPENBLAS_OPENMP_LIB})")
else()
  message(STATUS "mom: OpenBLAS, pthreads build (install libopenblas-openmp-dev for the OpenMP one)")
endif()

find_package(nlohmann_json CONFIG)
if(NOT nlohmann_json_FOUND)
  message(FATAL_ERROR "nlohmann-json not found: apt-get install nlohmann-json3-dev")
endif()

# CLI11 and GoogleTest serve the `mom` program and the tests only; the installed package needs neither.
find_package(CLI11 CONFIG)
if(NOT CLI11_FOUND)
  message(FATAL_ERROR "CLI11 not found: apt-get install libcli11-dev")
endif()

find_package(GTest)
if(NOT GTest_FOUND)
  message(FATAL_ERROR "GoogleTest not found: apt-get install libgtest-dev")
endif()
