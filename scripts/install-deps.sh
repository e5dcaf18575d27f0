#!/usr/bin/env bash
# Installs the Debian packages the build needs when they are missing (as root), or prints the exact
# command to run and stops. Nothing is downloaded except through apt from Debian's archive.
set -euo pipefail

packages=(cmake make g++ libgtest-dev libcli11-dev libopenblas-dev nlohmann-json3-dev libpng-dev)
# Wanted, not required: the OpenMP build of OpenBLAS (see cmake/dependencies.cmake). Installed along
# with the rest when we are root; otherwise the build uses the default OpenBLAS and says so.
wanted=(libopenblas-openmp-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
missing_wanted=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_wanted+=("$p")
done
if [ ${#missing_wanted[@]} -gt 0 ] && [ "$(id -u)" -eq 0 ]; then
  echo "mom: installing ${missing_wanted[*]} (optional)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing_wanted[@]}" >/dev/null; } || echo "mom: could not install ${missing_wanted[*]}; the build uses the default OpenBLAS" >&2
fi
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "mom: missing Debian packages: ${missing[*]}" >&2
  echo "mom: install them with:  sudo sh -c '$cmd'" >&2
  exit 1
fi
echo "mom: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
