#!/usr/bin/env bash
# The GPU configuration whose models learn the toy world's generation tasks: trains Mixture-of-Mamba
# and dense with one config and seed (4 layers of width 256, batches of 32 x 512 tokens, 4000 steps,
# TF32 GEMMs), then prints `mom compare` (the losses, and the training FLOPs and seconds at which each
# run first gets 90% of a task exact) and `mom eval` of each (64 held-out scenes), and draws two PNG
# grids of 8 samples each from the MoM model.
#   scripts/generation.sh [TRAIN FLAGS...]    runs in runs/gen-mom and runs/gen-dense
# Flags, when given, replace the whole config below (e.g. `--device cpu --steps 40 --eval-every 20` for
# a quick look at the pipeline without a GPU).
# MOM=path/to/mom uses that program instead of building build/mom.
set -euo pipefail
cd "$(dirname "$0")/.."
mom="${MOM:-}"
if [ -z "$mom" ]; then
  bash scripts/install-deps.sh
  cmake --preset default >/dev/null
  cmake --build --preset default -j "$(nproc)" --target mom
  mom=./build/mom
fi

config=(--device cuda --tf32 --layers 4 --d-model 256 --batch 32 --seq-len 512 --lr 2e-3 --steps 4000
        --eval-every 500 --ckpt-every 1000 --seed 1)
[ $# -gt 0 ] && config=("$@")
for model in mom dense; do
  start=$SECONDS
  $mom train --model "$model" --out "runs/gen-$model" --quiet "${config[@]}"
  echo "$model: trained in $((SECONDS - start)) s"
done

$mom compare runs/gen-mom runs/gen-dense
for model in mom dense; do
  echo "== mom eval runs/gen-$model"
  $mom eval "runs/gen-$model"
done
$mom generate runs/gen-mom --prompt "a red square at top left ." --samples 8 --temperature 0.7 --seed 1 \
  --out runs/gen-mom/samples-one-object.png
$mom generate runs/gen-mom --prompt "a red square at top left and a blue plus at center ." --samples 8 \
  --temperature 0.7 --seed 1 --out runs/gen-mom/samples-two-objects.png
