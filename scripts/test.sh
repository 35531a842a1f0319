#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite, then the readers of untrusted input built with
# AddressSanitizer and UndefinedBehaviorSanitizer (clang, build-fuzz/) over every input the fuzzers
# keep. The whole suite under sanitizers is scripts/sanitize.sh: its instrumented build alone
# takes longer on 2 cores than this whole script (docs/results.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
scripts/fuzz.sh --replay
