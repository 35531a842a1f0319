#!/usr/bin/env bash
# Post-training int8 on real architectures nobody wrote for this project: torchvision's resnet18,
# mobilenet_v2, mobilenet_v3_small, shufflenet_v2_x0_5 and squeezenet1_1 (random weights, 10
# classes, 3x32x32 inputs from Fashion-MNIST). Each is calibrated on 64 samples and exported to
# int8; the script prints what became int8, what stayed float, and the latency speed-up over the
# fp32 TorchScript at batch 1 and 64 on one thread (shrink bench, side by side). A model that
# cannot be exported prints Shrink's error line instead.
#
#   bench/int8_architectures.sh [NAME ...]      # needs a built tree (~5 minutes for all five)
set -uo pipefail
cd "$(dirname "$0")/.."
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(resnet18 mobilenet_v2 mobilenet_v3_small shufflenet_v2_x0_5 squeezenet1_1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
summary=()
for name in "${names[@]}"; do
  echo "== $name"
  /usr/bin/python3 tools/models/make_model.py "$name" "$out/$name.pt" || continue
  cat > "$out/$name.yaml" <<YAML
model: $out/$name.pt
seed: 0
threads: 2
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 16, test_batch_size: 64, resize: 32, channels: 3,
       train_limit: 256, test_limit: 64, normalize: {mean: [0.286, 0.286, 0.286], std: [0.353, 0.353, 0.353]}}
compress:
  - plugin: ptq
    calibration: {batches: 4}
    config_list:
      - op_types: [Conv2d, Linear]
        target_names: [_input_, weight]
      - op_types: [BatchNorm2d, ReLU, ReLU6, Hardswish, add, cat, Linear]
        target_names: [_output_]
evaluate: false
export: {dir: $out/$name.out, int8: true}
YAML
  if ! build/bin/shrink run "$out/$name.yaml" > "$out/$name.log" 2>&1; then
    summary+=("$name: $(grep 'error' "$out/$name.log" | head -1)")
    continue
  fi
  grep -E "^model_int8|^  (float|note)" "$out/$name.log" | sort | uniq -c | sort -rn | head -12
  build/bin/shrink bench "$out/$name.pt" --int8 "$out/$name.out/model_int8.pt" --shape 3,32,32 \
    --batch 1,64 --threads 1 --json > "$out/$name.bench" 2>/dev/null
  line=$(/usr/bin/python3 - "$out/$name.out/report.json" "$out/$name.bench" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["int8"]
rows = {x["batch"]: x for x in json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])["results"]}
print(f"{r['quantized_ops']} int8 ops, {len(r['float_ops'])} float ops, file {r['size_ratio']:.2f}x, "
      f"speed-up batch 1 {rows[1]['speedup']:.2f}x ({rows[1]['best_fp32_ms']:.2f} -> {rows[1]['int8_ms']:.2f} ms), "
      f"batch 64 {rows[64]['speedup']:.2f}x ({rows[64]['best_fp32_ms']:.1f} -> {rows[64]['int8_ms']:.1f} ms), "
      f"SQNR vs fake-quant {r['sqnr_db_vs_fake_quant'] or float('inf'):.1f} dB")
PY
)
  summary+=("$name: $line")
done
echo
printf '%s\n' "${summary[@]}"
