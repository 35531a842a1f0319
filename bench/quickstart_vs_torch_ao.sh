#!/usr/bin/env bash
# Runs the quick start with Shrink and the same protocol with torch.ao (FX graph mode, onednn),
# side by side in one run, and prints accuracy and epoch times for both.
#
#   bench/quickstart_vs_torch_ao.sh            # the full protocol: 5 + 5 epochs each (~8 minutes)
#   bench/quickstart_vs_torch_ao.sh --quick    # 1 + 1 epochs on 12800 samples, to try the bench
#
# Both use 2 intra-op threads and one OpenBLAS thread (Shrink sets that itself; Python gets
# OPENBLAS_NUM_THREADS=1), so the two loops compete on equal terms. Needs a built tree.
set -euo pipefail
cd "$(dirname "$0")/.."
shrink_args=()
py_args=()
if [ "${1:-}" = "--quick" ]; then
  shrink_args=(--set pretrain.epochs=1 --set finetune.epochs=1 --set data.train_limit=12800)
  py_args=(--epochs 1 --qat-epochs 1 --train-limit 12800)
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== Shrink: shrink run configs/quickstart.yaml ${shrink_args[*]}"
build/bin/shrink run configs/quickstart.yaml --out "$out/shrink" "${shrink_args[@]}"
echo "== torch.ao: bench/torch_ao_qat.py ${py_args[*]}"
# The allocator settings shrink sets for itself (mallopt in tools/shrink/main.cpp), so that both
# sides keep freed memory alike.
MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 \
  OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_ao_qat.py "${py_args[@]}" | tee "$out/torch_ao.json"

/usr/bin/python3 - "$out/shrink/report.json" "$out/torch_ao.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = json.load(open(sys.argv[2]))
m, tr = r["metrics"], r["train"]
rows = [
    ("fp32 accuracy", m["baseline_accuracy"], t["fp32_accuracy"], "{:.4f}"),
    ("QAT accuracy (fake-quant)", m["compressed_accuracy"], t["qat_accuracy"], "{:.4f}"),
    ("QAT accuracy (exported model)", m["exported_accuracy"], t["int8_accuracy"], "{:.4f}"),
    ("fp32 seconds per epoch", tr["baseline_seconds_per_epoch"], t["fp32_seconds_per_epoch"], "{:.2f}"),
    ("QAT seconds per epoch", tr["compressed_seconds_per_epoch"], t["qat_seconds_per_epoch"], "{:.2f}"),
    ("QAT / fp32 epoch time", tr["overhead"], t["ratio"], "{:.3f}"),
]
print()
print(f"{'figure':32} {'shrink':>10} {'torch.ao':>10}")
for name, a, b, fmt in rows:
    print(f"{name:32} {fmt.format(a):>10} {fmt.format(b):>10}")
print()
print(f"Shrink fp32 epoch / PyTorch fp32 epoch: {tr['baseline_seconds_per_epoch'] / t['fp32_seconds_per_epoch']:.3f}"
      " (target <= 1)")
print(f"Shrink QAT / fp32 epoch time: {tr['overhead']:.3f} (target <= 1.15)")
print(f"QAT accuracy, Shrink - torch.ao: {m['compressed_accuracy'] - t['qat_accuracy']:+.4f} (target >= 0)")
PY
