# ctest's install_consumer (tests/install/CMakeLists.txt): cmake -DSETTINGS=<file> -DCONFIG=<config> -P check.cmake
# Brings the libraries up to date (nothing to do after scripts/test.sh's build), installs the build
# into a fresh prefix, then configures, builds and runs the consumer against that prefix.
include(${SETTINGS})
set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
set(config_args)
if(CONFIG)
  set(config_args --config ${CONFIG})
endif()

# Runs one step quietly; on failure prints its output and stops.
macro(check what)
  if(NOT rc EQUAL 0)
    message("${out}")
    message(FATAL_ERROR "install_consumer: ${what} failed (${rc})")
  endif()
  message(STATUS "${what}: ok")
endmacro()

execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} ${config_args}
                        --target mom_core mom_kernels mom_autograd mom_nn mom_optim
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
check("build the libraries")
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} ${config_args} --prefix ${prefix}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
check("cmake --install ${BUILD_DIR} --prefix ${prefix}")

# As a user: -DCMAKE_PREFIX_PATH=<prefix>. The dependencies' folders that the build was given come
# through the environment, whose path lists need no escaping.
foreach(var PREFIX_PATH LIBRARY_PATH)
  if(${var})
    list(APPEND ${var} $ENV{CMAKE_${var}})
    string(REPLACE ";" ":" paths "${${var}}")
    set(ENV{CMAKE_${var}} "${paths}")
  endif()
endforeach()
set(configure_args -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix})
if(MAKE_PROGRAM)
  list(APPEND configure_args -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM})
endif()
if(CONFIG)
  list(APPEND configure_args -DCMAKE_BUILD_TYPE=${CONFIG})
endif()
if(CUDA_ROOT)
  list(APPEND configure_args -DCUDAToolkit_ROOT=${CUDA_ROOT})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK_DIR}/build ${configure_args}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
check("configure the consumer with find_package(mom)")
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build ${config_args}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
check("build the consumer")

set(exe ${WORK_DIR}/build/consumer)
if(CONFIG AND EXISTS ${WORK_DIR}/build/${CONFIG}/consumer)  # multi-config generators
  set(exe ${WORK_DIR}/build/${CONFIG}/consumer)
endif()
execute_process(COMMAND ${exe} ${WORK_DIR}/consumer.safetensors RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
message("${out}")
check("run the consumer")
# MOM_WITH_CUDA reaches the consumer's compilation exactly in a CUDA build.
if(WITH_CUDA AND NOT out MATCHES "mom with CUDA kernels")
  message(FATAL_ERROR "install_consumer: MOM_WITH_CUDA was not defined for the consumer of a CUDA build")
elseif(NOT WITH_CUDA AND NOT out MATCHES "mom without CUDA kernels")
  message(FATAL_ERROR "install_consumer: MOM_WITH_CUDA was defined for the consumer of a CPU build")
endif()
