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

# OpenBLAS: Debian's OpenMP build (libopenblas-openmp-dev) when it is there, else the default
# (pthreads) one. The OpenMP build runs its GEMMs on the OpenMP runtime's threads, the same ones as the
# framework's parallel loops; with the pthreads build two sets of worker threads spin against each
# other on a small machine, which is why memory-bound loops next to GEMMs (masked_linear's row moves)
# run serially there. MOM_BLAS_OPENMP tells the kernels which one they were built with.
find_library(MOM_OPENBLAS_OPENMP_LIB openblas PATHS /usr/lib/x86_64-linux-gnu/openblas-openmp NO_DEFAULT_PATH)
find_path(MOM_OPENBLAS_OPENMP_INCLUDE cblas.h PATHS /usr/include/x86_64-linux-gnu/openblas-openmp NO_DEFAULT_PATH)
if(MOM_OPENBLAS_OPENMP_LIB AND MOM_OPENBLAS_OPENMP_INCLUDE)
  add_library(BLAS::BLAS UNKNOWN IMPORTED)
  set_target_properties(BLAS::BLAS PROPERTIES IMPORTED_LOCATION ${MOM_OPENBLAS_OPENMP_LIB})
  set(MOM_CBLAS_INCLUDE_DIR ${MOM_OPENBLAS_OPENMP_INCLUDE})
  set(MOM_BLAS_OPENMP ON)
  message(STATUS "mom: OpenBLAS, OpenMP build (${MOM_OPENBLAS_OPENMP_LIB})")
else()
  set(BLA_VENDOR OpenBLAS)
  find_package(BLAS)
  find_path(MOM_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas x86_64-linux-gnu/openblas-pthread)
  if(NOT BLAS_FOUND OR NOT MOM_CBLAS_INCLUDE_DIR)
    message(FATAL_ERROR "OpenBLAS (CBLAS) not found: apt-get install libopenblas-openmp-dev")
  endif()
  set(MOM_BLAS_OPENMP OFF)
  message(STATUS "mom: OpenBLAS, pthreads build (install libopenblas-openmp-dev for the OpenMP one)")
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
