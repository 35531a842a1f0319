#!/usr/bin/env bash
# Installs Shrink into a temporary prefix, builds the out-of-tree plugin in this folder against it
# with the given C++ compiler, then loads and runs it with the installed (gcc-built) CLI; then
# builds the installed C plugin template with the matching C compiler only (no LibTorch, no C++).
# Usage: run.sh <shrink build dir> <this folder> <c++ compiler>
set -eu
build=$1
src=$2
cxx=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
for f in bin/shrink lib/shrink/plugins/naive.so lib/shrink/plugins/lsq.so lib/shrink/plugins/dorefa.so \
         lib/shrink/plugins/bnn.so include/shrink/plugin_api.h include/shrink/sdk.hpp \
         lib/cmake/Shrink/ShrinkConfig.cmake lib/cmake/Shrink/ShrinkPlugin.cmake \
         lib/cmake/Shrink/ShrinkAbiTargets.cmake lib/cmake/Shrink/ShrinkSdkTargets.cmake; do
  [ -e "$tmp/prefix/$f" ] || { echo "FAIL: install lacks $f"; exit 1; }
done

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src" -B "$tmp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_CXX_COMPILER="$cxx" "${launcher[@]}" >"$tmp/configure.log" \
  || { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }

plugin="$tmp/build/myalgo.so"
shrink="$tmp/prefix/bin/shrink"
# Exactly one exported symbol.
exported=$(nm -D --defined-only "$plugin" | awk '$2 == "T" || $2 == "D" || $2 == "B" {print $3}')
[ "$exported" = "shrink_plugin_entry" ] || { echo "FAIL: exports: $exported"; exit 1; }

env -u SHRINK_PLUGIN_PATH "$shrink" plugins --json --plugin-path "$plugin" >"$tmp/plugins.json" 2>"$tmp/err" \
  || { cat "$tmp/err"; exit 1; }
python3 - "$tmp/plugins.json" "$cxx" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
names = {a["name"]: a for a in data["algorithms"]}
assert "ternary" in names and "naive" in names, names.keys()
# The built-in plugins load from the installed plugin folder like any third-party one.
assert {"qat", "ptq", "lsq", "dorefa", "bnn"} <= names.keys(), names.keys()
want = "clang" if "clang" in sys.argv[2] else "gcc"
assert "compiler=" + want in names["ternary"]["build"], names["ternary"]["build"]
PY
out=$(env -u SHRINK_PLUGIN_PATH "$shrink" --plugin-path "$plugin" check ternary 2>"$tmp/err") \
  || { cat "$tmp/err"; exit 1; }
echo "$out"
grep -q 'ternary: quantize_weight ok' <<<"$out"
# (bnn refuses check's default 8-bit site: it is listed above and run by cli.lowbit.)
for algo in lsq dorefa; do
  env -u SHRINK_PLUGIN_PATH "$shrink" check "$algo" >"$tmp/check_$algo" 2>&1 || { cat "$tmp/check_$algo"; exit 1; }
  grep -q "$algo: quantize_weight ok" "$tmp/check_$algo" || { cat "$tmp/check_$algo"; exit 1; }
done
# A C plugin from the template installed with the SDK, built as a user would: a project(LANGUAGES C)
# that finds only Shrink's abi component. LibTorch and OpenMP are made unfindable and the C++
# compiler does not exist, so the test fails if any of them is needed.
template="$tmp/prefix/share/shrink/templates/c_plugin"
for f in CMakeLists.txt plugin.c; do
  [ -e "$template/$f" ] || { echo "FAIL: install lacks share/shrink/templates/c_plugin/$f"; exit 1; }
done
case "$cxx" in
  clang++*) cc=clang ;;
  *) cc=gcc ;;
esac
cp -r "$template" "$tmp/c_plugin"
c_launcher=()
command -v ccache >/dev/null && c_launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S "$tmp/c_plugin" -B "$tmp/c_build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER=/nonexistent/c++ \
  -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON -DCMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON "${c_launcher[@]}" \
  >"$tmp/c_configure.log" 2>&1 || { cat "$tmp/c_configure.log"; exit 1; }
cmake --build "$tmp/c_build" >"$tmp/c_build.log" 2>&1 || { cat "$tmp/c_build.log"; exit 1; }
c_plugin="$tmp/c_build/my_c_plugin.so"
exported=$(nm -D --defined-only "$c_plugin" | awk '$2 == "T" || $2 == "D" || $2 == "B" {print $3}')
[ "$exported" = "shrink_plugin_entry" ] || { echo "FAIL: C template exports: $exported"; exit 1; }
ldd "$c_plugin" | grep -q 'torch\|gomp\|stdc++' && { echo "FAIL: the C template links C++ or LibTorch: $(ldd "$c_plugin")"; exit 1; }
out=$(env -u SHRINK_PLUGIN_PATH "$shrink" --plugin-path "$c_plugin" check my_c_round 2>"$tmp/err") \
  || { cat "$tmp/err"; exit 1; }
echo "$out"
grep -q 'my_c_round: quantize_weight ok' <<<"$out" || { echo "FAIL: C template check"; exit 1; }
# The abi component alone gives shrink_add_plugin, which refuses C++ sources with what to do.
mkdir -p "$tmp/cxx_with_abi"
printf 'cmake_minimum_required(VERSION 3.18)\nproject(x LANGUAGES C CXX)\nfind_package(Shrink REQUIRED COMPONENTS abi)\nshrink_add_plugin(x SOURCES x.cpp)\n' \
  >"$tmp/cxx_with_abi/CMakeLists.txt"
touch "$tmp/cxx_with_abi/x.cpp"
if cmake -S "$tmp/cxx_with_abi" -B "$tmp/cxx_with_abi/build" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
     -DCMAKE_CXX_COMPILER="$cxx" >"$tmp/cxx_with_abi.log" 2>&1; then
  echo "FAIL: C++ sources accepted with only the abi component"; exit 1
fi
grep -q 'C++ sources need the C++ SDK' "$tmp/cxx_with_abi.log" || { cat "$tmp/cxx_with_abi.log"; exit 1; }

echo "out-of-tree plugin built with $cxx: loaded and ran; C template built with $cc"
