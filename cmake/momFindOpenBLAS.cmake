# OpenBLAS for mom, shared by the build (cmake/dependencies.cmake) and the installed package
# (momConfig.cmake, beside which this file is installed): a program that links the static libraries
# must link the same OpenBLAS. Defines the imported target BLAS::BLAS and sets
#   MOM_OPENBLAS_FOUND     whether it was found (the caller decides how to fail)
#   MOM_BLAS_OPENMP        ON for Debian's OpenMP build, OFF for the default (pthreads) one
#   MOM_CBLAS_INCLUDE_DIR  the folder of its cblas.h (only the kernels' sources include it)
# A function, so that FindBLAS's variables (BLA_VENDOR, BLAS_LIBRARIES, ...) stay out of the caller's
# scope: the package is loaded into its user's project.
#
# Debian's OpenMP build (libopenblas-openmp-dev) is preferred when it is there: it runs its GEMMs on
# the OpenMP runtime's threads, the same ones as the framework's parallel loops; with the pthreads
# build two sets of worker threads spin against each other on a small machine, which is why
# memory-bound loops next to GEMMs (masked_linear's row moves) run serially there.
function(mom_find_openblas)
  find_library(MOM_OPENBLAS_OPENMP_LIB openblas PATHS /usr/lib/x86_64-linux-gnu/openblas-openmp NO_DEFAULT_PATH)
  find_path(MOM_OPENBLAS_OPENMP_INCLUDE cblas.h PATHS /usr/include/x86_64-linux-gnu/openblas-openmp NO_DEFAULT_PATH)
  if(MOM_OPENBLAS_OPENMP_LIB AND MOM_OPENBLAS_OPENMP_INCLUDE)
    # A project may find the package twice (or have found BLAS itself): define the target once.
    if(NOT TARGET BLAS::BLAS)
      add_library(BLAS::BLAS UNKNOWN IMPORTED)
      set_target_properties(BLAS::BLAS PROPERTIES IMPORTED_LOCATION ${MOM_OPENBLAS_OPENMP_LIB})
    endif()
    set(MOM_CBLAS_INCLUDE_DIR ${MOM_OPENBLAS_OPENMP_INCLUDE} PARENT_SCOPE)
    set(MOM_BLAS_OPENMP ON PARENT_SCOPE)
    set(MOM_OPENBLAS_FOUND ON PARENT_SCOPE)
  else()
    set(BLA_VENDOR OpenBLAS)
    find_package(BLAS)
    find_path(MOM_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas x86_64-linux-gnu/openblas-pthread)
    set(MOM_BLAS_OPENMP OFF PARENT_SCOPE)
    if(BLAS_FOUND AND MOM_CBLAS_INCLUDE_DIR)
      set(MOM_OPENBLAS_FOUND ON PARENT_SCOPE)
    else()
      set(MOM_OPENBLAS_FOUND OFF PARENT_SCOPE)
    endif()
  endif()
endfunction()
mom_find_openblas()
