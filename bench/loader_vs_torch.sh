#!/usr/bin/env bash
# The folder loader against PyTorch's DataLoader, side by side in one run (issue 17):
#  1. images/s on Fashion-MNIST's 70 000 images as a 64x64 RGB JPEG folder, random_resized_crop
#     (56) + flip + normalize, batch 64, at 1 and 2 workers, Shrink's loader vs DataLoader over
#     torchvision's ImageFolder with the same transforms;
#  2. peak resident memory reading that folder, a 10x larger one (symlinks) and a 100x larger list
#     file (7 million lines naming those files), the same number of images read;
#  3. the quick-start net's training epoch on the 28x28 gray PNG folder against the IDX files in
#     memory (the loader must not be the bottleneck), with training on both cores (threads: 2; no
#     core left for a worker: batches are prepared inline) and on one (threads: 1; one worker).
#
#   bench/loader_vs_torch.sh [WORK]   # WORK keeps the folders between runs (default /tmp/shrink-bench-data)
#
# Making the folders takes a few minutes the first time. Needs a built tree and loader_bench
# (cmake --build build --target loader_bench).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/shrink-bench-data}
mkdir -p "$work"
[ -d "$work/rgb64" ] || /usr/bin/python3 tools/data/make_image_folders.py "$work/rgb64" --format jpeg --rgb --size 64
[ -d "$work/gray28" ] || /usr/bin/python3 tools/data/make_image_folders.py "$work/gray28" --format png
# One folder of all 70 000 (train and test), and one of 700 000: ten links to each image.
/usr/bin/python3 - "$work" <<'PY'
import os, sys
work = sys.argv[1]
for name, copies in (("all70k", 1), ("all700k", 10)):
    out = os.path.join(work, name)
    if os.path.isdir(out):
        continue
    for split in ("train", "test"):
        src = os.path.join(work, "rgb64", split)
        for c in sorted(os.listdir(src)):
            os.makedirs(os.path.join(out, c), exist_ok=True)
            for f in os.listdir(os.path.join(src, c)):
                for k in range(copies):
                    os.symlink(os.path.join(src, c, f), os.path.join(out, c, f"{split}_{k}_{f}"))
PY
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for workers in 1 2; do
  OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_loader.py "$work/all70k" --workers "$workers" | tee -a "$results"
  build/bin/loader_bench "$work/all70k" --workers "$workers" | tee -a "$results"
done
build/bin/loader_bench "$work/all700k" --workers 2 | sed 's/"shrink"/"shrink_700k"/' | tee -a "$results"
[ -f "$work/all7m.txt" ] || /usr/bin/python3 - "$work" <<'PY'
import os, sys
work = sys.argv[1]
root = os.path.join(work, "rgb64")
with open(os.path.join(work, "all7m.txt"), "w") as out:
    for k in range(100):
        for split in ("train", "test"):
            for line in open(os.path.join(root, f"{split}.txt")):
                out.write(f"rgb64/{line}")
PY
build/bin/loader_bench "$work/all7m.txt" --workers 2 | sed 's/"shrink"/"shrink_7m"/' | tee -a "$results"

echo "== the quick-start net, one epoch: IDX in memory vs the PNG folder"
quick=(--set pretrain.epochs=1 --set 'compress=[]' --set finetune=null --set export.int8=false
       --set export.latency=false)
folder=(--set data.format=folder --set "data.path=$work/gray28/train" --set "data.test_path=$work/gray28/test")
for threads in 2 1; do
  build/bin/shrink run configs/quickstart.yaml --out "$work/run_idx_t$threads" "${quick[@]}" \
    --set threads=$threads > /dev/null
  build/bin/shrink run configs/quickstart.yaml --out "$work/run_folder_t$threads" "${quick[@]}" \
    --set threads=$threads "${folder[@]}" > /dev/null
done

/usr/bin/python3 - "$results" "$work" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["loader"], r["workers"]): r for r in rows}
for w in (1, 2):
    s, t = by[("shrink", w)], by[("torch", w)]
    print(f"{w} worker(s): Shrink {s['images_per_s']:.0f} images/s, PyTorch DataLoader "
          f"{t['images_per_s']:.0f} images/s: {s['images_per_s'] / t['images_per_s']:.2f}x")
a = by[("shrink", 2)]
for key in ("shrink_700k", "shrink_7m"):
    b = by[(key, 2)]
    print(f"peak RSS: {a['samples']} images {a['max_rss_mb']:.1f} MB, {b['samples']} images "
          f"{b['max_rss_mb']:.1f} MB: {b['max_rss_mb'] / a['max_rss_mb']:.3f}x, "
          f"{(b['max_rss_mb'] - a['max_rss_mb']) * 2**20 / (b['samples'] - a['samples']):.1f} bytes per "
          f"more image (listing {a['open_seconds']:.2f} s, {b['open_seconds']:.2f} s)")
for threads in (2, 1):
    epoch = {}
    for name in ("idx", "folder"):
        r = json.load(open(f"{sys.argv[2]}/run_{name}_t{threads}/report.json"))
        epoch[name] = r["train"]["pretrain"]["seconds"] / r["train"]["pretrain"]["epochs_done"]
        workers = r["data"]["workers"]
        print(f"threads {threads}: quick-start epoch on {name} ({workers} workers): "
              f"{epoch[name]:.2f} s, accuracy {r['metrics']['baseline_accuracy']:.4f}")
    print(f"threads {threads}: folder / in-memory epoch time: {epoch['folder'] / epoch['idx']:.3f}x")
PY
