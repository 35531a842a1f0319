#!/usr/bin/env bash
# The test suite under AddressSanitizer and UndefinedBehaviorSanitizer: a build of its own in
# build-asan/ (the framework, the CLI, every plugin and test plugin instrumented), then its tests.
#   scripts/sanitize.sh            # the unit tests (shrink_tests) and the CLI tests that train
#                                  # little: what CI runs
#   scripts/sanitize.sh --all      # every test, the long CLI ones too
# Any finding fails the run: ASan aborts on the first error, UBSan does not recover. LeakSanitizer
# reports only leaks in Shrink's own code (tests/sanitizers/lsan.supp lists LibTorch's and
# Python's start-up allocations, which live for the process by design).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ ! -f build-asan/build.ninja ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHRINK_SANITIZE=ON
fi
# Set for the build too: it runs the instrumented test binary to list its tests.
# intercept_tls_get_addr=0: GCC 12's LeakSanitizer records a bogus range for a dynamic TLS block of
# the dlopen'ed libraries (LibTorch's, the plugins') and its tracer then crashes at exit ("Tracer
# caught signal 11", google/sanitizers#1353), after a test has passed; `shrink run resnet18.yaml
# --print-plan` did so every time. Without the interception no dynamic TLS block is scanned.
export ASAN_OPTIONS="abort_on_error=0:halt_on_error=1:detect_odr_violation=0:detect_leaks=1:intercept_tls_get_addr=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0"
cmake --build build-asan -j "$(nproc)"
# The CLI tests that train for minutes (several times slower instrumented) and the out-of-tree
# builds run with --all only.
selection=(-E '^(out_of_tree|cli\.(run|ptq|int8_models|lowbit|prune|run_formats))')
[ "${1:-}" = "--all" ] && selection=()
ctest --test-dir build-asan --output-on-failure -j "$(nproc)" "${selection[@]}"
