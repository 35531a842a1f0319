#!/usr/bin/env bash
# `shrink run` on a user's own data (issue 17): Fashion-MNIST written as an image folder (PNG) and
# as list files (JPEG) by tools/data/make_image_folders.py, trained with torchvision's
# augmentations; a data-source plugin reading a CSV format of its own; and the bad input that
# must be one line each, with nothing written.
# Usage: data_cli_test.sh SHRINK_EXE MODEL_DIR SOURCE_DIR TEST_PLUGIN_DIR
set -euo pipefail
shrink=$1
model_dir=$2
src=$3
plugins=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
make_folder() { /usr/bin/python3 "$src/tools/data/make_image_folders.py" "$@" > /dev/null; }

make_folder "$work/png" --format png --limit 1000
make_folder "$work/jpeg" --format jpeg --limit 1000

# Training augments (random crop with padding, flip); evaluation takes the deterministic part.
experiment() {  # NAME DATA-MAPPING [extra top-level YAML]
  cat > "$work/$1.yaml" <<YAML
model: $model_dir/mnist.pt
seed: 1
threads: 2
plugin_paths: [$plugins/csv_rows]
data: $2
pretrain: {epochs: 2, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
export: {dir: out_$1, int8: false}
${3:-}
YAML
}
augment='transforms: [{random_crop: {size: 28, padding: 2}}, random_horizontal_flip, {normalize: {mean: [0.286], std: [0.353]}}]'

echo "== image folder (PNG), augmented, 2 workers"
experiment folder "{format: folder, path: png/train, test_path: png/test, workers: 2, batch_size: 32, $augment}"
"$shrink" run "$work/folder.yaml" | tee "$work/folder.log"
grep -q "^data: 1000 training, 1000 test samples of shape \[1, 28, 28\] (folder, 2 workers)" \
    "$work/folder.log" || fail "the data line"

echo "== list files (JPEG), the same experiment otherwise"
experiment list "{format: folder, list: jpeg/train.txt, test_list: jpeg/test.txt, batch_size: 32, $augment}"
"$shrink" run "$work/list.yaml" > "$work/list.log"

echo "== a data-source plugin (CSV rows)"
/usr/bin/python3 - "$work" <<'PY'
import gzip, sys
root = "/usr/share/datasets/fashion-mnist"
for split, stem, n in (("train", "train", 1000), ("test", "t10k", 500)):
    images = gzip.open(f"{root}/{stem}-images-idx3-ubyte.gz").read()[16:]
    labels = gzip.open(f"{root}/{stem}-labels-idx1-ubyte.gz").read()[8:]
    with open(f"{sys.argv[1]}/{split}.csv", "w") as f:
        for i in range(n):
            f.write(",".join([str(labels[i])] + [str(b) for b in images[i * 784:(i + 1) * 784]]) + "\n")
PY
experiment csv "{format: csv_rows, path: train.csv, test_path: test.csv, side: 28, batch_size: 32, normalize: {mean: [0.286], std: [0.353]}}"
"$shrink" run "$work/csv.yaml" > "$work/csv.log"
"$shrink" plugins --plugin-path "$plugins/csv_rows" | grep -E "^csv_rows .*data-source" > /dev/null \
    || fail "shrink plugins does not list the data source"

/usr/bin/python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
for name in ("folder", "list", "csv"):
    r = json.load(open(f"{work}/out_{name}/report.json"))
    acc = r["metrics"]["baseline_accuracy"]
    assert acc > 0.55, (name, acc)  # 2 epochs on 1000 images; chance is 0.1
    d = r["data"]
    assert d["train"]["samples"] == 1000 and d["train"]["skipped"] == 0, d
    print(name, "accuracy", acc)
folder = json.load(open(f"{work}/out_folder/report.json"))["data"]
assert folder["train"]["classes"][0] == "0_tshirt" and len(folder["train"]["classes"]) == 10, folder
assert json.load(open(f"{work}/out_csv/report.json"))["data"]["train"]["classes"] is None
PY

# One line naming what is wrong, a non-zero exit, no output folder.
refused() {  # NAME EXPECTED-TEXT
  if "$shrink" run "$work/$1.yaml" > "$work/$1.out" 2> "$work/$1.err"; then fail "$1 ran"; fi
  grep -qF -- "$2" "$work/$1.err" || { cat "$work/$1.err"; fail "$1: expected '$2'"; }
  # Besides plugin discovery's info line, one line.
  [ "$(grep -vc "^shrink: info: " "$work/$1.err")" -eq 1 ] || { cat "$work/$1.err"; fail "$1: more than one line"; }
  [ ! -e "$work/out_$1" ] || fail "$1 left an output folder"
}
echo "== bad input"
experiment throws "{format: csv_rows, path: train.csv, test_path: test.csv, fail_at: 700}"
refused throws "plugin 'csv_rows' (data source 'csv_rows'), sample 700: get failed: row 700 is broken"
experiment shape "{format: csv_rows, path: train.csv, test_path: test.csv, wrong_shape_at: 3}"
refused shape "plugin 'csv_rows' (data source 'csv_rows'), sample 3: get returned an input of shape [28, 28], describe said [1, 28, 28]"
experiment unknown_key "{format: csv_rows, path: train.csv, test_path: test.csv, sides: 28}"
refused unknown_key "unknown_key.yaml:5:64: data.sides: unknown key (plugin 'csv_rows' (data source 'csv_rows') reads: side, fail_at, wrong_shape_at)"
experiment no_source "{format: parquet, path: train.csv, test_path: test.csv}"
refused no_source "data.format: 'parquet' is neither a built-in format (idx, tensors, folder) nor a data source of the loaded plugins (csv_rows)"
mkdir -p "$work/png/train/10_empty"
experiment empty_class "{format: folder, path: png/train, test_path: png/test}"
refused empty_class "png/train/10_empty: an empty class folder (no .jpg, .jpeg or .png image in it)"
rmdir "$work/png/train/10_empty"
experiment no_test "{format: folder, path: png/train}"
refused no_test "data.test_path: required with format folder"
make_folder "$work/png30" --format png --size 30 --limit 200
experiment test_size "{format: folder, path: png/train, test_path: png30/test}"
refused test_size "/png30/test/"
grep -q "is \[1, 30, 30\] once prepared, .* \[1, 28, 28\]: the test samples must come out the size of the training ones" "$work/test_size.err" || fail "test size line"
experiment random_eval "{format: folder, path: png/train, test_path: png/test, transforms: {train: [random_horizontal_flip], test: [random_horizontal_flip]}}"
refused random_eval "data.transforms.test: random_horizontal_flip is random; evaluation takes deterministic transforms"

echo "== an unreadable image: an error naming it, or skipped and counted"
printf '\xff\xd8\xff not a jpeg' > "$work/jpeg/train/3_dress/00003.jpg"
experiment bad_image "{format: folder, path: jpeg/train, test_path: jpeg/test}"
refused bad_image "jpeg/train/3_dress/00003.jpg: not a readable JPEG ("
experiment skipping "{format: folder, path: jpeg/train, test_path: jpeg/test, on_bad_sample: skip}"
"$shrink" run "$work/skipping.yaml" > "$work/skipping.log"
grep -q "^warning: data: 1 unreadable training sample(s) skipped, the first .*3_dress/00003.jpg" \
    "$work/skipping.log" || fail "no skip warning"
/usr/bin/python3 -c "
import json, sys
d = json.load(open('$work/out_skipping/report.json'))['data']
assert d['train']['skipped'] == 1 and d['train']['samples'] == 1000, d
"
echo "data CLI: OK"
