#!/usr/bin/env bash
# libFuzzer (clang, with ASan and UBSan) on Shrink's readers of untrusted input: the YAML
# experiment with --set overrides, the config_list parser and planner, the IDX and tensors
# readers, the plugin file checks before dlopen (tests/fuzz/targets.hpp). Not part of the test
# run; the inputs it keeps are (tests/fuzz/replay_test.cpp).
#   scripts/fuzz.sh                      # every target for 600 s
#   scripts/fuzz.sh 60 idx tensors       # 60 s each, two targets
#   scripts/fuzz.sh --replay             # no fuzzing: every kept input (seeds, regressions) run
#                                        # once through the instrumented readers; what CI runs
# The corpus grows in build-fuzz/corpus/<target>/ from tests/fuzz/seeds/<target>/ and is kept
# between runs; a crash's input lands in build-fuzz/crashes/<target>/. Fix it, then copy the input
# into tests/fuzz/regressions/<target>/ so that the normal test run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
replay=0
if [ "${1:-}" = "--replay" ]; then
  replay=1
  shift
fi
seconds=${1:-600}
[ "$#" -gt 0 ] && shift
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(experiment config_list idx tensors plugin_file)
scripts/setup.sh >/dev/null
if [ ! -f build-fuzz/build.ninja ]; then
  CC=clang CXX=clang++ cmake -S tests/fuzz -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build build-fuzz -j "$(nproc)"
# allocator_may_return_null: an allocation too large for the machine fails as it does outside ASan
# (std::bad_alloc, which the readers refuse in one line) instead of ending the run.
export ASAN_OPTIONS="detect_odr_violation=0:allocator_may_return_null=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0"
status=0
if [ "$replay" = 1 ]; then
  # -runs=0: each input in the folders once, then exit; an ASan or UBSan report fails it.
  for t in "${targets[@]}"; do
    folders=("tests/fuzz/seeds/$t")
    [ -d "tests/fuzz/regressions/$t" ] && folders+=("tests/fuzz/regressions/$t")
    if ! build-fuzz/fuzz_$t -runs=0 -rss_limit_mb=4096 "${folders[@]}" \
        >"build-fuzz/replay_$t.log" 2>&1; then
      echo "fuzz.sh --replay: fuzz_$t failed on a kept input (log: build-fuzz/replay_$t.log)"
      status=1
    fi
  done
  [ "$status" = 0 ] && echo "fuzz.sh --replay: every kept input read or refused, no sanitizer report"
  exit $status
fi
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t" "build-fuzz/crashes/$t"
  echo "== fuzz_$t for ${seconds}s"
  if ! build-fuzz/fuzz_$t -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="build-fuzz/crashes/$t/" \
      "build-fuzz/corpus/$t" "tests/fuzz/seeds/$t" 2>"build-fuzz/fuzz_$t.log"; then
    echo "fuzz_$t found a crash: build-fuzz/crashes/$t/ (log: build-fuzz/fuzz_$t.log)"
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "build-fuzz/fuzz_$t.log" || true
done
exit $status
