#!/usr/bin/env bash
# Sets up, builds and runs Shrink's main job. Until the quick-start experiment lands, that is
# listing the algorithm plugins and smoke-testing the built-in one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build/bin/shrink plugins
build/bin/shrink check naive
