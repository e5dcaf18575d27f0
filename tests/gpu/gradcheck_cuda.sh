#!/usr/bin/env bash
# The `gpu` ctest of `mom gradcheck --device cuda`: every registered case on the GPU (f64 and f32)
# against the CPU in f64, with the GPU suites' base seed (MOM_TEST_SEED, 0 when unset; see
# tests/gpu/cuda_support.h) as its --seed, so that one variable replays every GPU test.
#   bash tests/gpu/gradcheck_cuda.sh path/to/mom
set -euo pipefail
seed="${MOM_TEST_SEED:-0}"
echo "MOM_TEST_SEED=$seed: mom gradcheck --device cuda --seed $seed"
exec "$1" gradcheck --device cuda --seed "$seed"
