#!/usr/bin/env bash
# Data-parallel training throughput, Shrink against PyTorch's DistributedDataParallel (Gloo, CPU),
# side by side in one run (issue 18): the quick-start net (build/models/mnist.pt) trained on
# Fashion-MNIST from the IDX files, at 1 and 2 processes, one intra-op thread each, batch 32 per
# process; images/s over all processes (the median of the measured epochs: the first of each run
# is warm-up when a run has more than one), the scaling efficiency from 1 to 2 processes
# (images/s at 2 / (2 x images/s at 1)) and Shrink / PyTorch.
#
#   bench/ddp_vs_torch.sh             # 30000 samples, 3 epochs a run, 2 rounds (~4 minutes)
#   bench/ddp_vs_torch.sh --resnet18  # and resnet18 on the 32x32 RGB folder (~7 minutes more)
#   bench/ddp_vs_torch.sh --quick     # 1280 samples, 1 epoch, 1 round: to try the bench (~10 s)
#   options: --samples N --epochs E --rounds R --batch B (the quick-start net)
#
# Shrink: `shrink run configs/quickstart.yaml` (pretraining only: no compression stage, no
# fine-tuning, no evaluation, no export), with --nproc 2 for 2 processes and without --nproc for
# one; its images/s come from report.json's train.history. PyTorch: bench/torch_ddp.py, the same
# protocol (its header says how: the plain model at 1 process, DDP at 2). The runs alternate
# (Shrink 1, PyTorch 1, Shrink 2, PyTorch 2, then again each round) so that the machine's noise
# hits both. With --resnet18: configs/resnet18_folder.yaml's model and transforms on a seeded
# 6400 of shrink-data/fmnist32/train (made by tools/data/make_image_folders.py; skipped if
# missing), batch 128 per process, no loader workers on either side (data.workers: 0, DataLoader
# num_workers=0: each process decodes its own batches, so 2 processes use the 2 cores and no
# more); Shrink's cosine schedule against PyTorch's constant lr (the same work per step).
# Needs a built tree and the machine otherwise idle.
set -euo pipefail
cd "$(dirname "$0")/.."
samples=30000 epochs=3 rounds=2 batch=32
resnet=0 resnet_samples=6400 resnet_epochs=3 resnet_batch=128
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) samples=1280 epochs=1 rounds=1 resnet_samples=512 resnet_epochs=1 ;;
    --resnet18) resnet=1 ;;
    --samples) samples=$2; shift ;;
    --epochs) epochs=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --batch) batch=$2; shift ;;
    *) echo "usage: bench/ddp_vs_torch.sh [--quick] [--resnet18] [--samples N] [--epochs E]" \
            "[--rounds R] [--batch B]" >&2; exit 2 ;;
  esac
  shift
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Pretraining alone, and nothing written but report.json and run.log.
train_only=(--set threads=1 --set 'compress=[]' --set finetune=null --set evaluate=false
            --set export.model=false --set export.int8=false --set export.latency=false)

# One line per run: its median over the measured epochs, and every epoch's images/s.
say() {
  /usr/bin/python3 - "$1" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
v = r["images_per_s"]
m = v[1:] if len(v) > 1 else v
print(f"  {r['tool']:6} {r['nproc']} process{'es' if r['nproc'] > 1 else '  '}: "
      f"{statistics.median(m):7.0f} images/s  (epochs: {' '.join(f'{x:.0f}' for x in v)})", flush=True)
PY
}

# shrink_run NAME NPROC ROUND CONFIG OVERRIDES...: $out/NAME_shrink_NPROC_ROUND.json
shrink_run() {
  local name=$1 n=$2 round=$3 config=$4
  shift 4
  local dir="$out/${name}_shrink_${n}_${round}" nproc=()
  if [ "$n" -gt 1 ]; then nproc=(--nproc "$n"); fi
  build/bin/shrink run "$config" --out "$dir" "${nproc[@]}" "$@" > "$dir.log" 2>&1 ||
    { cat "$dir.log" >&2; echo "ddp_vs_torch.sh: shrink run failed (above)" >&2; exit 1; }
  /usr/bin/python3 - "$dir/report.json" "$n" > "$dir.json" <<'PY'
import json, sys
h = [e for e in json.load(open(sys.argv[1]))["train"]["history"] if e["phase"] == "pretrain"]
print(json.dumps({"tool": "shrink", "nproc": int(sys.argv[2]),
                  "images_per_s": [e["images"] / e["seconds"] for e in h], "epochs": h}))
PY
  say "$dir.json"
}

# torch_run NAME NPROC ROUND ARGS...: $out/NAME_torch_NPROC_ROUND.json
torch_run() {
  local name=$1 n=$2 round=$3
  shift 3
  local file="$out/${name}_torch_${n}_${round}.json"
  # The allocator settings shrink sets for itself (mallopt in tools/shrink/main.cpp).
  MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 OPENBLAS_NUM_THREADS=1 \
    /usr/bin/python3 bench/torch_ddp.py --nproc "$n" "$@" > "$file"
  say "$file"
}

bench_model() {  # NAME SHRINK_CONFIG "SHRINK OVERRIDES" "TORCH ARGS"
  local name=$1 config=$2
  local -a shrink_args torch_args
  read -r -a shrink_args <<< "$3"
  read -r -a torch_args <<< "$4"
  for round in $(seq "$rounds"); do
    echo "== $name, round $round of $rounds"
    for n in 1 2; do
      shrink_run "$name" "$n" "$round" "$config" "${train_only[@]}" "${shrink_args[@]}"
      torch_run "$name" "$n" "$round" "${torch_args[@]}"
    done
  done
}

bench_model mnist configs/quickstart.yaml \
  "--set model=build/models/mnist.pt --set data.batch_size=$batch --set data.train_limit=$samples --set pretrain.epochs=$epochs" \
  "--model build/models/mnist.pt --batch-size $batch --train-limit $samples --epochs $epochs"

if [ "$resnet" = 1 ]; then
  if [ -d shrink-data/fmnist32/train ] && [ -f build/models/resnet18.pt ]; then
    bench_model resnet18 configs/resnet18_folder.yaml \
      "--set model=build/models/resnet18.pt --set data.batch_size=$resnet_batch --set data.train_limit=$resnet_samples --set data.workers=0 --set pretrain.epochs=$resnet_epochs" \
      "--model build/models/resnet18.pt --folder shrink-data/fmnist32/train --workers 0 --crop 32 --padding 2 --lr 0.05 --batch-size $resnet_batch --train-limit $resnet_samples --epochs $resnet_epochs"
  else
    echo "== resnet18: skipped (no shrink-data/fmnist32/train or build/models/resnet18.pt; make the" \
         "folder with tools/data/make_image_folders.py shrink-data/fmnist32 --format png --rgb --size 32)"
  fi
fi

/usr/bin/python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
runs = {}
for path in glob.glob(os.path.join(sys.argv[1], "*_*_*_*.json")):
    name, tool, n, _ = os.path.basename(path)[:-5].rsplit("_", 3)
    v = json.load(open(path))["images_per_s"]
    runs.setdefault((name, tool, int(n)), []).append(v[1:] if len(v) > 1 else v)
print()
print(f"{'model':9} {'tool':7} {'processes':>9} {'images/s':>9} {'per round':>18} {'scaling':>8}")
for name in dict.fromkeys(k[0] for k in sorted(runs)):
    median = {}
    for tool in ("shrink", "torch"):
        for n in (1, 2):
            rounds = runs.get((name, tool, n))
            if not rounds:
                continue
            median[tool, n] = statistics.median(x for r in rounds for x in r)
            per_round = " ".join(f"{statistics.median(r):.0f}" for r in rounds)
            scaling = (f"{median[tool, 2] / (2 * median[tool, 1]):.3f}"
                       if n == 2 and (tool, 1) in median else "")
            print(f"{name:9} {tool:7} {n:9} {median[tool, n]:9.0f} {per_round:>18} {scaling:>8}")
    for n in (1, 2):
        if ("shrink", n) in median and ("torch", n) in median:
            print(f"{name:9} Shrink / PyTorch at {n} process{'es' if n > 1 else ''}: "
                  f"{median['shrink', n] / median['torch', n]:.3f}")
print()
print("images/s: all processes' images per second of an epoch, the median over the measured epochs of "
      "every round (the first epoch of a run is warm-up when it has more than one); scaling: images/s "
      "at 2 / (2 x images/s at 1), 1.0 being perfect")
PY
