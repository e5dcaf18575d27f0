#!/usr/bin/env bash
# The one GPU script: builds the CUDA tests and benchmarks for sm_90, runs the `gpu`-labelled
# ctest suite, compute-sanitizer (memcheck, racecheck) over the GPU test binary where the sanitizer
# works, `mom gradcheck --device cuda` (every registered case on the GPU against the CPU), a short
# `mom train --device cuda` run of each model in float32 and in bf16, then every kernel benchmark
# (examples/bench/bench_cuda_*.cpp), and prints a short table last. Full logs go to $OUT when it is set
# (else build-gpu/logs). Exits non-zero when the build fails, a test fails or a sanitizer finds errors.
#
#   bash scripts/gpu-check.sh
#
# It needs CUDA, cmake (and ninja, when there is one), and GoogleTest, CLI11, nlohmann-json and
# OpenBLAS. A machine that lacks the Debian packages of the last four and has no network gets them
# from .deps/: scripts/fetch-gpu-deps.sh downloads the packages there beforehand, on a machine that
# reaches Debian's archive, and this script unpacks them into a private prefix (never into /) when the
# system lacks any of them.
# Environment knobs:
#   MOM_FORCE_LOCAL_DEPS=1       use the unpacked .deps even when the system has the packages
#   MOM_GPU_CHECK_BUILD_ONLY=1   stop after configure and build (a machine without a GPU)
#   MOM_GPU_BUILD_DIR=dir        build folder (default build-gpu); MOM_JOBS=n build jobs (default nproc)
#   MOM_DEPS_DIR=dir             where .deps are unpacked (default /tmp/momdeps)
#   MOM_GPU_CHECK_BUDGET=s       seconds the whole script may take (default 0: no limit, the sanitizers
#                                run to completion); with a limit, the sanitizer runs get what is left
#                                after the other steps' share, so the table always prints
#   MOM_GPU_CHECK_SANITIZE=0     skip compute-sanitizer (a quicker run while iterating on a kernel)
#   MOM_GPU_BENCHES="a b"        run only these benchmarks (default: every bench_cuda_*)
set -uo pipefail
cd "$(dirname "$0")/.."

build_dir="${MOM_GPU_BUILD_DIR:-build-gpu}"
budget="${MOM_GPU_CHECK_BUDGET:-0}"  # 0: no limit
jobs="${MOM_JOBS:-$(nproc)}"
logs="${OUT:-$build_dir/logs}"
mkdir -p "$logs" "$build_dir"
summary="$logs/summary.txt"
: >"$summary"
note() { printf '%-14s %s\n' "$1" "$2" >>"$summary"; }
finish() {
  note "elapsed" "${SECONDS}s"
  echo
  echo "==================== gpu-check summary ===================="
  cat "$summary"
  exit "$1"
}

# ---- dependencies ----
# libpng is optional to the build (without it `mom generate` writes PPM only): a system without png.h
# still suffices when .deps holds no libpng-dev to supply it.
have_system_deps() {
  [ -f /usr/include/gtest/gtest.h ] && [ -f /usr/include/CLI/CLI.hpp ] && [ -f /usr/include/nlohmann/json.hpp ] &&
    { [ -f /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ] || [ -f /usr/include/openblas/cblas.h ] ||
      [ -f /usr/include/cblas.h ]; } &&
    { [ -f /usr/include/png.h ] || ! ls .deps/libpng-dev_*.deb >/dev/null 2>&1; }
}
unpack_deb() {  # dpkg-deb when there is one, else ar + tar
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$1" "$2"
  else
    local tmp member
    tmp="$(mktemp -d)"
    (cd "$tmp" && ar x "$OLDPWD/$1") || return 1
    member="$(ls "$tmp"/data.tar.* | head -1)"
    tar -xf "$member" -C "$2"
    rm -rf "$tmp"
  fi
}

cmake_args=()
if [ "${MOM_FORCE_LOCAL_DEPS:-0}" = 1 ] || ! have_system_deps; then
  prefix="${MOM_DEPS_DIR:-/tmp/momdeps}"
  if ! ls .deps/*.deb >/dev/null 2>&1; then
    note "deps" "MISSING: the system lacks packages and .deps/ is empty (run scripts/fetch-gpu-deps.sh)"
    finish 2
  fi
  rm -rf "$prefix"
  mkdir -p "$prefix"
  for deb in .deps/*.deb; do
    unpack_deb "$deb" "$prefix" || { note "deps" "FAILED to unpack $deb"; finish 2; }
  done
  cmake_args+=("-DMOM_DEPS_PREFIX=$prefix")
  export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu/openblas-pthread:$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  note "deps" "unpacked $(ls .deps/*.deb | wc -l) packages of .deps into $prefix"
else
  note "deps" "system packages"
fi

# ---- configure and build ----
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[ -f "$build_dir/CMakeCache.txt" ] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=${generator[1]:-Unix Makefiles}$" "$build_dir/CMakeCache.txt" &&
  rm -rf "$build_dir/CMakeCache.txt" "$build_dir/CMakeFiles"
{
  command -v nvcc || ls /usr/local/cuda/bin/nvcc
  nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version
  cmake --version | head -1
} >"$logs/configure.log" 2>&1
if ! cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DMOM_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 "${cmake_args[@]}" >>"$logs/configure.log" 2>&1; then
  tail -40 "$logs/configure.log"
  note "configure" "FAILED (configure.log)"
  finish 2
fi
note "configure" "ok (sm_90)"
benches="${MOM_GPU_BENCHES:-$(ls examples/bench/bench_cuda_*.cpp | xargs -n1 basename | sed 's/\.cpp$//' | tr '\n' ' ')}"
if ! cmake --build "$build_dir" -j "$jobs" --target mom_tests_gpu mom $benches >"$logs/build.log" 2>&1; then
  grep -E "error|Error" "$logs/build.log" | head -40
  tail -20 "$logs/build.log"
  note "build" "FAILED (build.log)"
  finish 2
fi
note "build" "ok: mom_tests_gpu mom $benches"
if [ "${MOM_GPU_CHECK_BUILD_ONLY:-0}" = 1 ]; then
  note "tests" "not run (MOM_GPU_CHECK_BUILD_ONLY=1)"
  finish 0
fi

status=0
gpu_name="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
note "device" "${gpu_name:-nvidia-smi gave nothing}"

# ---- tests ----
ctest --test-dir "$build_dir" -L gpu --output-on-failure -j 4 --timeout 300 >"$logs/ctest.log" 2>&1
ctest_rc=$?
cat "$logs/ctest.log"
line="$(grep -E "[0-9]+% tests passed" "$logs/ctest.log" | tail -1)"
if [ $ctest_rc -ne 0 ]; then
  status=1
  note "tests" "FAILED: ${line:-ctest exited $ctest_rc}; $(grep -cE '\*\*\*Failed|\*\*\*Exception|\*\*\*Timeout' "$logs/ctest.log") failing (ctest.log)"
else
  note "tests" "${line:-ctest exited 0}"
fi

# ---- compute-sanitizer ----
# Over the test binary, minus the tests whose 2^31-element kernels would take minutes instrumented.
sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)"
tests_bin="$build_dir/tests/mom_tests_gpu"
filter="--gtest_filter=-*TwoToThe31*"
run_sanitizer() {  # tool, log, at most this many seconds (with a budget), clean-pattern, seconds to keep
  local tool="$1" log="$2" limit="$3" clean="$4" keep="$5"
  local limiter=()
  if [ "$budget" -gt 0 ]; then
    local left=$((budget - SECONDS - keep))
    [ $left -lt $limit ] && limit=$left
    if [ $limit -lt 20 ]; then
      note "$tool" "skipped: the time budget is spent"
      return
    fi
    limiter=(timeout "$limit")
  fi
  "${limiter[@]}" "$sanitizer" --tool "$tool" --error-exitcode 1 "$tests_bin" "$filter" >"$log" 2>&1
  local rc=$?
  if [ $rc -eq 124 ]; then
    note "$tool" "timed out after ${limit}s ($(basename "$log"))"
  elif grep -q "$clean" "$log" && [ $rc -eq 0 ]; then
    note "$tool" "clean ($(grep -o "$clean" "$log" | head -1))"
  else
    status=1
    note "$tool" "ERRORS, rc $rc: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|FAILED' "$log" | head -2 | tr '\n' ' ')($(basename "$log"))"
  fi
}
# racecheck over groups of tests, one process each: over the whole binary in one process the tool
# fails after ~27 tests (at the gather test, which passes alone with no hazard), so the groups keep
# each process short. racecheck looks at shared memory only, so the tests of the kernels that use it
# (conv, scan, reductions, softmax, cross-entropy, rms_norm, routing, masked_linear, and the training
# step over all of them) go first; the others follow. Without a budget it runs every test (about 8
# minutes on an H200); with one, it takes what is left but `keep` seconds and says how many tests it
# covered.
shared_memory_tests="Cuda.*Conv*:Cuda.Scan*:Cuda.SumAndMean*:Cuda.LongReductions*:Cuda.EmptyInputs*:Cuda.Max*"
shared_memory_tests+=":Cuda.BadInputsGiveTheCpuErrors:Cuda.Softmax*:Cuda.CrossEntropy*:Cuda.RmsNorm*:Cuda.Routing*"
shared_memory_tests+=":Cuda.MaskedLinear*:Cuda.SumOfSquares*:Cuda.ClipGradNorm*:Cuda.SumToShape*:Cuda.MambaLM*"
shared_memory_tests+=":Cuda.AbsentModality*:Cuda.ShortRun*"
run_racecheck_groups() {  # log, seconds to keep for what follows (with a budget)
  local log="$1" keep="$2" group=4
  local end=$((budget - keep))
  local tests=() suite="" line
  while IFS= read -r line; do
    case "$line" in
      " "*) tests+=("$suite$(echo "$line" | awk '{print $1}')") ;;
      *.) suite="$line" ;;
    esac
  done < <("$tests_bin" --gtest_list_tests --gtest_filter="$shared_memory_tests-*TwoToThe31*" 2>/dev/null
           "$tests_bin" --gtest_list_tests --gtest_filter="-$shared_memory_tests:*TwoToThe31*" 2>/dev/null)
  : >"$log"
  local done_tests=0 failed=0 i rc names
  for ((i = 0; i < ${#tests[@]}; i += group)); do
    local limiter=()
    if [ "$budget" -gt 0 ]; then
      local now_left=$((end - SECONDS))
      [ $now_left -lt 20 ] && break
      limiter=(timeout "$now_left")
    fi
    names="$(IFS=:; echo "${tests[*]:i:group}")"
    "${limiter[@]}" "$sanitizer" --tool racecheck --error-exitcode 1 "$tests_bin" --gtest_filter="$names" \
      >>"$log" 2>&1
    rc=$?
    [ $rc -eq 124 ] && break
    if [ $rc -ne 0 ] || ! tail -3 "$log" | grep -q "RACECHECK SUMMARY: 0 hazards"; then failed=1; fi
    done_tests=$((i + group < ${#tests[@]} ? i + group : ${#tests[@]}))
  done
  if [ $failed -ne 0 ]; then
    status=1
    note "racecheck" "ERRORS in a group: $(grep -E 'RACECHECK SUMMARY|FAILED' "$log" | grep -v ' 0 hazards' | head -2 | tr '\n' ' ')($(basename "$log"))"
  elif [ $done_tests -lt ${#tests[@]} ]; then
    note "racecheck" "0 hazards in $done_tests of ${#tests[@]} tests (groups of $group); the time budget ran out ($(basename "$log"))"
  else
    note "racecheck" "clean: 0 hazards in all ${#tests[@]} tests (groups of $group) ($(basename "$log"))"
  fi
}
if [ "${MOM_GPU_CHECK_SANITIZE:-1}" = 0 ]; then
  note "sanitizer" "skipped (MOM_GPU_CHECK_SANITIZE=0)"
elif [ -z "$sanitizer" ]; then
  note "sanitizer" "unavailable: compute-sanitizer not found"
else
  "$sanitizer" --tool memcheck "$tests_bin" --gtest_filter=Cuda.FillAnyValueAnyLayout >"$logs/memcheck.log" 2>&1
  if grep -qE "Device not supported|Error: Target application terminated before first instrumented API call|Unable to find injection library" "$logs/memcheck.log" ||
     ! grep -q "ERROR SUMMARY" "$logs/memcheck.log"; then
    note "sanitizer" "unavailable: $(grep -m1 -iE 'error|not supported' "$logs/memcheck.log" || echo 'probe gave no summary') (memcheck.log)"
  else
    run_sanitizer memcheck "$logs/memcheck.log" 240 "ERROR SUMMARY: 0 errors" 120
    run_racecheck_groups "$logs/racecheck.log" 90
  fi
fi

# ---- the GPU against the CPU through the CLI, and the trainer on the GPU ----
if timeout 120 "$build_dir/mom" gradcheck --device cuda >"$logs/gradcheck.log" 2>&1; then
  note "gradcheck" "mom gradcheck --device cuda: $(tail -1 "$logs/gradcheck.log")"
else
  status=1
  note "gradcheck" "FAILED: $(grep -c FAIL "$logs/gradcheck.log") rows; $(tail -1 "$logs/gradcheck.log") (gradcheck.log)"
fi
for model in mom dense learned; do
  for precision in f32 bf16; do
    run="$model-$precision"
    if timeout 120 "$build_dir/mom" train --device cuda --model "$model" --precision "$precision" --steps 300 \
         --eval-every 300 --ckpt-every 300 --log-every 100 --out "$build_dir/runs/$run" >"$logs/train-$run.log" 2>&1; then
      note "train $run" "$(grep -E '^step +300' "$logs/train-$run.log" | tail -1 | tr -s ' ')"
      note "" "$(grep -E '^eval +300' "$logs/train-$run.log" | tail -1 | tr -s ' ')"
    else
      status=1
      note "train $run" "FAILED: $(tail -2 "$logs/train-$run.log" | tr '\n' ' ') (train-$run.log)"
    fi
  done
done

# ---- benchmarks ----
for bench in $benches; do
  if timeout 120 "$build_dir/$bench" >"$logs/$bench.log" 2>&1; then
    note "bench" "$bench ($bench.log):"
    sed 's/^/    /' "$logs/$bench.log" >>"$summary"
  else
    status=1
    note "bench" "$bench FAILED: $(tail -3 "$logs/$bench.log" | tr '\n' ' ')"
  fi
done

finish $status
