#!/usr/bin/env bash
# Installs Shrink's build and test dependencies (Debian packages only) and builds it into build/.
# Idempotent: packages already present are not fetched again; the build is incremental (ccache).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build ccache clang clang-format binutils python3
  libtorch-dev libopenblas0-pthread
  zlib1g-dev libboost-dev libboost-filesystem-dev libyaml-cpp-dev libspdlog-dev nlohmann-json3-dev libcli11-dev
  googletest libgtest-dev libbenchmark-dev
  libturbojpeg0-dev libpng-dev libgloo-dev
  dataset-fashion-mnist python3-torch python3-torchvision
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
    "${missing[@]}" >/dev/null
fi

build_type=${SHRINK_BUILD_TYPE:-Release}
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$build_type"
fi
cmake --build build -j "$(nproc)"
