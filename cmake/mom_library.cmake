# mom_library(NAME SOURCES <cpp...> CUDA_SOURCES <cu...> DEPS <targets...>)
# One static library per folder. .cu files join only in a CUDA build, which also defines
# MOM_WITH_CUDA for the library and everything that links it. Headers are included as "core/tensor.h":
# from the repository root in the build, from <prefix>/include/mom once installed (cmake/mom_install.cmake),
# where <prefix>/include also holds the umbrella <mom/mom.h>.
function(mom_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;CUDA_SOURCES;DEPS" ${ARGN})
  set(sources ${ARG_SOURCES})
  if(MOM_WITH_CUDA)
    list(APPEND sources ${ARG_CUDA_SOURCES})
  endif()
  add_library(${name} STATIC ${sources})
  target_include_directories(${name} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
                             $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/mom>)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  target_compile_features(${name} PUBLIC cxx_std_17)  # the headers' own requirement, passed on to users
  if(MOM_WITH_CUDA)
    target_compile_definitions(${name} PUBLIC MOM_WITH_CUDA)
    target_link_libraries(${name} PUBLIC CUDA::cudart)
    set_target_properties(${name} PROPERTIES CUDA_SEPARABLE_COMPILATION OFF)
    target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo>)
  endif()
endfunction()
