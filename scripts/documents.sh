#!/usr/bin/env bash
# State reset at document starts against reading across documents, on the toy data: trains the
# default Mixture-of-Mamba model twice with the same seed, batches, tokens and FLOPs, once resetting
# the state at every <bos> (the default, --doc-token 1) and once reading across documents
# (--doc-token -1), then prints for each model its held-out losses per modality, read both ways, and
# how many of a fixed set of captions its greedy generation continues correctly (the image draws the
# caption's scene, the speech spells the caption), from a fresh state as generation always starts.
#   scripts/documents.sh [TRAIN FLAGS...]     runs in runs/docs-reset and runs/docs-cross
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target mom
mom=./build/mom

$mom train --model mom --doc-token 1 --out runs/docs-reset --quiet "$@"
$mom train --model mom --doc-token -1 --out runs/docs-cross --quiet "$@"

# 24 captions: every colour and shape, cells all over the grid, every other one with a second object.
colours=(red green blue yellow purple orange)
shapes=(square ring plus cross triangle)
cells=("top left" "top center" "top right" "middle left" "center" "middle right" "bottom left" "bottom center"
       "bottom right")
prompts=()
for i in $(seq 0 23); do
  p="a ${colours[i % 6]} ${shapes[i % 5]} at ${cells[i % 9]}"
  if ((i % 2)); then
    p="$p and a ${colours[(i + 3) % 6]} ${shapes[(i + 2) % 5]} at ${cells[(i + 4) % 9]}"
  fi
  prompts+=("$p .")
done

losses() {  # RUN DOC_TOKEN -> "total text image speech" of `mom eval`
  $mom eval "$1" --doc-token "$2" | tail -n 1 | awk -F'[ |]+' '{printf "%.4f  %.4f  %.4f  %.4f", $2, $4, $6, $8}'
}

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
generation() {  # RUN -> "<images right>/<n>  <speech right>/<n>"
  local images=0 speech=0 out
  for p in "${prompts[@]}"; do
    out="$($mom generate "$1" --prompt "$p" --out "$scratch/image.ppm")"
    grep -q "image draws the caption's scene: yes" <<<"$out" && images=$((images + 1))
    grep -q "speech spells the caption: *yes" <<<"$out" && speech=$((speech + 1))
  done
  echo "$images/${#prompts[@]}    $speech/${#prompts[@]}"
}

echo
echo "held-out loss (nats per token) read with resets at <bos> | read across documents; greedy generation"
printf '%-18s %-30s   %-30s   %s\n' "trained" "total   text    image   speech" "total   text    image   speech" \
  "images speech right"
for run in reset cross; do
  name="resets at <bos>"
  [ "$run" = cross ] && name="across documents"
  printf '%-18s %-30s   %-30s   %s\n' "$name" "$(losses runs/docs-$run 1)" "$(losses runs/docs-$run -1)" \
    "$(generation runs/docs-$run)"
done
