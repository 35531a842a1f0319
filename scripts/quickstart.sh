#!/usr/bin/env bash
# Sets up, builds and runs Shrink's main job: the quick-start experiment (configs/quickstart.yaml),
# the seed's network trained on Fashion-MNIST in fp32, then quantization-aware training with the
# `qat` plugin. Results: shrink-out/quickstart/{report.json, calibration.json, model_qat.pt}.
# Extra arguments go to `shrink run` (e.g. --set finetune.epochs=1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build/bin/shrink run configs/quickstart.yaml "$@"
