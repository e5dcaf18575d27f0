#!/usr/bin/env bash
# README's train command: installs what is missing, builds the `mom` program, trains the default dense
# Mamba and Mixture-of-Mamba models on the toy multimodal data (CPU; the GPU where the build and the
# machine have one), and compares them: FLOPs-to-match per modality and a loss plot.
#   scripts/train.sh               the comparison, runs in runs/dense and runs/mom
#   scripts/train.sh ARGS...       just `mom train ARGS...`
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target mom
if [ $# -gt 0 ]; then
  exec ./build/mom train "$@"
fi
./build/mom train --model dense --out runs/dense
./build/mom train --model mom --out runs/mom
./build/mom compare runs/mom runs/dense
