#!/usr/bin/env bash
# Downloads (never installs) the Debian packages that the GPU machine lacks into .deps/, so that they
# travel with the working tree: that machine has CUDA, cmake and ninja but no GoogleTest, CLI11,
# nlohmann-json or OpenBLAS, and no network. scripts/gpu-check.sh unpacks them into a private prefix.
# Run here, on a Debian 12 machine that reaches Debian's archive:  bash scripts/fetch-gpu-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The headers, CMake configs and libraries the build links, and the runtime libraries OpenBLAS needs
# (libgfortran5 and its libquadmath0). libopenblas-pthread-dev holds cblas.h and libopenblas.so.
packages=(libgtest-dev libcli11-dev nlohmann-json3-dev libopenblas-pthread-dev libopenblas0-pthread
          libgfortran5 libquadmath0)

mkdir -p .deps
rm -f .deps/*.deb
(cd .deps && apt-get download "${packages[@]}")
ls -l .deps
du -sh .deps
