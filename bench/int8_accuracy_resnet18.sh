#!/usr/bin/env bash
# int8 accuracy on a trained real architecture, with the int8_onednn preset and no hand-written
# config_list: torchvision's resnet18 (scripted, 10 classes) trained in fp32 on Fashion-MNIST at
# 32x32 RGB (the grey image in three channels), then
#   - post-training int8 (ptq, the preset, calibration on 640 training samples);
#   - quantization-aware training with the preset (qat, BatchNorm folded, one epoch from the fp32
#     model);
# each scored on the whole test set (10000 images) as fp32, fake-quant and real int8. The fp32 model
# trains once (`shrink run` with no compress stage saves it as model_fp32.pt); both rows start from
# it. QAT trains one more epoch, so its row is also held against a control: the fp32 model trained
# that epoch with the same optimizer and no quantization. Prints a markdown table and each run's
# summary. Targets (issue 19): int8 within 0.5 point of fp32 after ptq, within 0.3 point after qat.
#
#   bench/int8_accuracy_resnet18.sh [--epochs 3]     # ~15 minutes on 2 cores; needs a built tree
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=3
if [ "${1:-}" = "--epochs" ]; then
  [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "--epochs: expected a positive integer" >&2; exit 2; }
  epochs=$2
fi
out=${SHRINK_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"

cat > "$out/fp32.yaml" <<YAML
model: $(pwd)/build/models/resnet18.pt
seed: 0
threads: 2
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 64, test_batch_size: 500, resize: 32, channels: 3,
       normalize: {mean: [0.286, 0.286, 0.286], std: [0.353, 0.353, 0.353]}}
pretrain:
  epochs: $epochs
  optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 5.0e-4}
  scheduler: {name: cosine}
export: {dir: $out/fp32}
YAML
echo "== fp32: $epochs epochs"
build/bin/shrink run "$out/fp32.yaml" | tail -3

cat > "$out/int8.yaml" <<YAML
model: $out/fp32/model_fp32.pt
seed: 0
threads: 2
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 64, test_batch_size: 500, resize: 32, channels: 3,
       normalize: {mean: [0.286, 0.286, 0.286], std: [0.353, 0.353, 0.353]}}
compress:
  - plugin: ptq
    calibration: {batches: 10}
    config_list:
      - preset: int8_onednn
export: {dir: $out/ptq, int8: true, int8_only_if_faster: false, latency: false}
YAML
echo "== ptq with the preset"
build/bin/shrink run "$out/int8.yaml" | tail -4
echo "== qat with the preset, 1 epoch"
build/bin/shrink run "$out/int8.yaml" --out "$out/qat" \
  --set 'compress=[{plugin: qat, fold_bn: true, config_list: [{preset: int8_onednn}]}]' \
  --set 'finetune={epochs: 1, optimizer: {name: sgd, lr: 0.001, momentum: 0.9, weight_decay: 5.0e-4}}' | tail -4

echo "== control: the fp32 model trained the same epoch without quantization"
build/bin/shrink run "$out/int8.yaml" --out "$out/control" --set 'compress=[]' \
  --set 'pretrain={epochs: 1, optimizer: {name: sgd, lr: 0.001, momentum: 0.9, weight_decay: 5.0e-4}}' \
  --set export.int8=false | tail -2

/usr/bin/python3 - "$out" "$epochs" <<'PY'
import json, sys
out, epochs = sys.argv[1], sys.argv[2]
control = json.load(open(f"{out}/control/report.json"))["metrics"]["baseline_accuracy"]
print(f"\n| resnet18, Fashion-MNIST 32x32 RGB ({epochs} fp32 epochs) | fp32 | fake-quant | int8 | int8 - fp32 |")
print("| --- | --- | --- | --- | --- |")
for row in ("ptq", "qat"):
    m = json.load(open(f"{out}/{row}/report.json"))["metrics"]
    fp32, fq, i8 = m["baseline_accuracy"], m["compressed_accuracy"], m["int8_accuracy"]
    print(f"| {row} with the int8_onednn preset | {fp32:.4f} | {fq:.4f} | {i8:.4f} | "
          f"{100 * (i8 - fp32):+.2f} points |")
    if row == "qat":
        print(f"| qat against the fp32 model trained the same epoch (control) | {control:.4f} | "
              f"{fq:.4f} | {i8:.4f} | {100 * (i8 - control):+.2f} points |")
PY
