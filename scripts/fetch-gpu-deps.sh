#!/usr/bin/env bash
# Downloads (never installs) into .deps/ the Debian packages of GoogleTest, CLI11, nlohmann-json,
# OpenBLAS and libpng, for a GPU machine that has CUDA and cmake but not these packages, and no
# network: .deps/ goes there with the working tree, and scripts/gpu-check.sh unpacks it into a private
# prefix.
# Run on a Debian 12 machine that reaches Debian's archive:  bash scripts/fetch-gpu-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The headers, CMake configs and libraries the build links, and the runtime libraries OpenBLAS needs
# (libgfortran5 and its libquadmath0). libopenblas-pthread-dev holds cblas.h and libopenblas.so.
# libpng-dev (png.h, libpng16.so) needs libpng16-16 and zlib1g-dev; zlib1g itself is on every Debian.
packages=(libgtest-dev libcli11-dev nlohmann-json3-dev libopenblas-pthread-dev libopenblas0-pthread
          libgfortran5 libquadmath0 libpng-dev libpng16-16 zlib1g-dev)

mkdir -p .deps
rm -f .deps/*.deb
(cd .deps && apt-get download "${packages[@]}")
ls -l .deps
du -sh .deps
