# `cmake --install <build> --prefix P` installs the library for other projects:
#   P/include/mom/mom.h                    the umbrella header: #include <mom/mom.h>
#   P/include/mom/{core,kernels,...}/*.h   the library's headers, which include each other as "core/tensor.h"
#   P/lib/libmom_{core,kernels,...}.a      the static libraries
#   P/lib/cmake/mom/                       the package: find_package(mom) gives mom::mom (link this),
#                                          mom::core, mom::kernels, mom::autograd, mom::nn, mom::optim
# The targets' installed include directories are P/include (for <mom/mom.h>) and P/include/mom (for the
# headers' own includes), never the repository. Neither the `mom` program nor the tests are installed.
include(CMakePackageConfigHelpers)
set(MOM_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/mom)

foreach(lib core kernels autograd nn optim)
  set_target_properties(mom_${lib} PROPERTIES EXPORT_NAME ${lib})
endforeach()
set_target_properties(mom_all PROPERTIES EXPORT_NAME mom)

# Sanitized libraries need the sanitizer runtimes in every program that links them; a program built with
# the same flags also reports its own errors the same way. Only the installed targets carry them: the
# tree's targets get them from the directory-wide options.
if(MOM_SANITIZE)
  target_compile_options(mom_core INTERFACE "$<INSTALL_INTERFACE:${MOM_SANITIZE_COMPILE_OPTIONS}>")
  target_link_options(mom_core INTERFACE "$<INSTALL_INTERFACE:${MOM_SANITIZE_LINK_OPTIONS}>")
endif()

install(TARGETS mom_core mom_kernels mom_autograd mom_nn mom_optim mom_all EXPORT momTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT momTargets NAMESPACE mom:: DESTINATION ${MOM_INSTALL_CMAKEDIR})

# The public headers (*.h; the .cuh files are the CUDA sources' own), each in its folder.
file(GLOB_RECURSE MOM_PUBLIC_HEADERS RELATIVE ${PROJECT_SOURCE_DIR} CONFIGURE_DEPENDS
     ${PROJECT_SOURCE_DIR}/core/*.h ${PROJECT_SOURCE_DIR}/kernels/*.h ${PROJECT_SOURCE_DIR}/autograd/*.h
     ${PROJECT_SOURCE_DIR}/nn/*.h ${PROJECT_SOURCE_DIR}/optim/*.h)
foreach(header ${MOM_PUBLIC_HEADERS})
  get_filename_component(folder ${header} DIRECTORY)
  install(FILES ${PROJECT_SOURCE_DIR}/${header} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mom/${folder})
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/mom/mom.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mom)

# The package re-finds what the static libraries link (OpenMP, OpenBLAS, nlohmann_json, CUDA in a
# CUDA build) with the build's own OpenBLAS discovery, installed beside it.
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/momConfig.cmake.in ${PROJECT_BINARY_DIR}/momConfig.cmake
                              INSTALL_DESTINATION ${MOM_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/momConfigVersion.cmake COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/momConfig.cmake ${PROJECT_BINARY_DIR}/momConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/momFindOpenBLAS.cmake
        DESTINATION ${MOM_INSTALL_CMAKEDIR})
