#!/usr/bin/env bash
# Post-training int8 on the quick-start net, Shrink and torch.ao side by side in one run:
# accuracy (fp32, post-training fake-quant, real int8), int8 file size, and int8 latency speed-up
# over the best fp32 a user could run (the TorchScript as loaded, or frozen +
# optimize_for_inference, whichever is faster) at batch 1 and 64 on one thread (each tool's own
# models, taking turns of 4 calls: warm is the median of a turn's later calls, cold of its first,
# after the other models ran; bench/timing.py).
#
#   bench/ptq_int8_vs_torch_ao.sh            # 5 epochs of fp32 training each (~3 minutes)
#   bench/ptq_int8_vs_torch_ao.sh --quick    # 1 epoch on 12800 samples
set -euo pipefail
cd "$(dirname "$0")/.."
shrink_args=()
py_args=()
if [ "${1:-}" = "--quick" ]; then
  shrink_args=(--set pretrain.epochs=1 --set data.train_limit=12800)
  py_args=(--epochs 1 --train-limit 12800)
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== Shrink: shrink run configs/ptq_quickstart.yaml ${shrink_args[*]}"
build/bin/shrink run configs/ptq_quickstart.yaml --out "$out/shrink" "${shrink_args[@]}"
echo "== Shrink: shrink bench"
build/bin/shrink bench build/models/mnist.pt --int8 "$out/shrink/model_int8.pt" --shape 1,28,28 \
  --batch 1,64 --threads 1 --json | tee "$out/bench.txt"
tail -1 "$out/bench.txt" > "$out/bench.json"
echo "== torch.ao: bench/torch_ao_ptq.py ${py_args[*]}"
# The allocator settings shrink sets for itself (mallopt in tools/shrink/main.cpp), so that both
# sides keep freed memory alike.
MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 \
  OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_ao_ptq.py "${py_args[@]}" | tee "$out/torch_ao.json"

/usr/bin/python3 - "$out/shrink/report.json" "$out/bench.json" "$out/torch_ao.json" <<'PY'
import json, sys
r, b, t = (json.load(open(p)) for p in sys.argv[1:4])
m = r["metrics"]
rows = {x["batch"]: x for x in b["results"]}
lines = [
    ("fp32 accuracy", m["baseline_accuracy"], t["fp32_accuracy"], "{:.4f}"),
    ("post-training fake-quant accuracy", m["compressed_accuracy"], None, "{:.4f}"),
    ("int8 accuracy", m["int8_accuracy"], t["int8_accuracy"], "{:.4f}"),
    ("int8 - fp32 accuracy", m["int8_accuracy"] - m["baseline_accuracy"], t["int8_accuracy"] - t["fp32_accuracy"], "{:+.4f}"),
    ("int8 file / fp32 file", r["int8"]["size_ratio"], t["size_ratio"], "{:.3f}"),
    ("int8 speed-up, batch 1", rows[1]["speedup"], t["batch1"]["speedup"], "{:.2f}x"),
    ("int8 speed-up, batch 64", rows[64]["speedup"], t["batch64"]["speedup"], "{:.2f}x"),
    ("int8 speed-up cold, batch 1", rows[1]["cold_speedup"], t["batch1"]["cold_speedup"], "{:.2f}x"),
    ("int8 speed-up cold, batch 64", rows[64]["cold_speedup"], t["batch64"]["cold_speedup"], "{:.2f}x"),
    ("int8 ms, batch 64", rows[64]["int8_ms"], t["batch64"]["int8_ms"], "{:.3f}"),
    ("best fp32 ms, batch 64", rows[64]["best_fp32_ms"], t["batch64"]["best_fp32_ms"], "{:.3f}"),
]
print()
print(f"{'figure':36} {'shrink':>10} {'torch.ao':>10}")
for name, a, c, fmt in lines:
    print(f"{name:36} {fmt.format(a):>10} {fmt.format(c) if c is not None else '-':>10}")
print()
print(f"targets (issue 19, against the best fp32): speed-up >= 2.2x at batch 64 ({rows[64]['speedup']:.2f}x), >= 1.8x at batch 1 "
      f"({rows[1]['speedup']:.2f}x); int8 file <= 0.27x ({r['int8']['size_ratio']:.3f}); "
      f"post-training accuracy within 0.1 point of fp32 ({m['compressed_accuracy'] - m['baseline_accuracy']:+.4f})")
PY
