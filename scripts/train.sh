#!/usr/bin/env bash
# README's train command: installs what is missing, builds the `mom` program, and trains the default
# dense and Mixture-of-Mamba models on the toy multimodal data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target mom
./build/mom train "$@"
