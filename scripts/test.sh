#!/usr/bin/env bash
# README's test command: installs what is missing, configures (CUDA kernels compiled when nvcc
# works), builds, and runs every `cpu`-labelled test. The output ends with ctest's summary.
#   scripts/test.sh            the default preset (build/)
#   scripts/test.sh asan       AddressSanitizer + UBSan build (build-asan/)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
bash scripts/install-deps.sh
jobs="$(nproc)"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$jobs"
ctest --preset "$preset" -j "$jobs"
