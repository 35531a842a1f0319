#!/usr/bin/env bash
# `shrink run` as a user types it: the quick-start experiment shortened with --set (a few hundred
# steps of real Fashion-MNIST), its outputs, model_qat.pt re-scored by plain PyTorch, an
# interrupted run resumed to the same result, and validation errors.
# Usage: run_cli_test.sh SHRINK_EXE MODEL_DIR SOURCE_DIR
set -euo pipefail
shrink=$1
model_dir=$2
src=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

short=(--set export.int8_only_if_faster=false --set "model=$model_dir/mnist.pt" --set data.train_limit=6400 --set data.test_limit=2000
       --set pretrain.epochs=2 --set finetune.epochs=2)

echo "== a short quick start: 2 x 100 steps fp32, 2 x 100 steps QAT"
"$shrink" run "$src/configs/quickstart.yaml" --out "$work/a" "${short[@]}" | tee "$work/a.log"
for f in report.json calibration.json model_qat.pt model_int8.pt; do
  [ -s "$work/a/$f" ] || fail "$f missing"
done
[ ! -e "$work/a/checkpoint.pt" ] || fail "the checkpoint was not removed after a complete run"
[ ! -e "$work/a.partial" ] || fail "the staging folder was left behind"
grep -q "^finetune epoch 2/2: loss .*images/s" "$work/a.log" || fail "no per-epoch progress line"

/usr/bin/python3 "$src/tools/models/eval_model.py" "$work/a/model_qat.pt" --like "$work/a/report.json" > "$work/py.json"
cat "$work/py.json"
/usr/bin/python3 - "$work/a" "$work/py.json" <<'PY'
import json, sys
out, py = sys.argv[1], json.load(open(sys.argv[2]))
report = json.load(open(out + "/report.json"))
cal = json.load(open(out + "/calibration.json"))
m, t = report["metrics"], report["train"]
print("report metrics", m, "epoch seconds", t["baseline_seconds_per_epoch"], t["compressed_seconds_per_epoch"])
assert m["baseline_accuracy"] > 0.6, m          # chance is 0.1
assert m["compressed_accuracy"] > 0.6, m
assert abs(m["exported_accuracy"] - m["compressed_accuracy"]) <= 0.001, m
# Plain PyTorch scores the exported model as Shrink did.
assert abs(py["accuracy"] - m["exported_accuracy"]) <= 0.001, (py, m)
assert "aten::fake_quantize_per_tensor_affine" in py["ops"], py
# The QAT model lowered to int8 kernels (export.int8 in the quick start) scores as its fake-quant
# model within 0.5 point (10 of 2000 samples); QAT's affine weights are re-quantized symmetric.
i8 = report["int8"]
print("int8", m["int8_accuracy"], i8["sqnr_db_vs_fake_quant"], i8["notes"])
assert i8["quantized_ops"] == 3, i8
assert abs(m["int8_accuracy"] - m["compressed_accuracy"]) <= 0.005, m
assert any("re-quantized symmetric" in n for n in i8["notes"]), i8
assert t["baseline_seconds_per_epoch"] > 0 and t["compressed_seconds_per_epoch"] > 0, t
assert report["experiment"]["resolved"]["finetune"]["epochs"] == 2, report["experiment"]
# The seed's config_list: 4 ops x 3 targets + 3 relu outputs, less the inputs of conv2, fc1 and
# fc2: each is a relu's output after pooling or a reshape, quantized once, by the relu's site.
sites = {(op, target) for op, targets in cal.items() for target in targets}
expected = {(op, t) for op in ("conv1", "conv2", "fc1", "fc2") for t in ("_input_0", "weight", "_output_0")}
expected |= {(f"relu{i}", "_output_0") for i in (1, 2, 3)}
merged = {(op, "_input_0") for op in ("conv2", "fc1", "fc2")}
assert sites == expected - merged, sites ^ (expected - merged)
assert len(report["sites"]) == 12, len(report["sites"])
points = {(p["site"], p["into"], tuple(p["through"])) for p in report["shared_points"]}
assert points == {("conv2._input_0", "relu1._output_0", ("max_pool2d",)),
                  ("fc1._input_0", "relu2._output_0", ("max_pool2d", "view")),
                  ("fc2._input_0", "relu3._output_0", ())}, points
for op, targets in cal.items():
    for target, c in targets.items():
        assert c["quant_dtype"] == "int8" and c["quant_scheme"] == "affine" and c["quant_bits"] == 8, c
        assert c["scale"] > 0 and -127 <= c["zero_point"] <= 127 and c["zero_point"] == int(c["zero_point"]), c
        assert c["tracked_min"] <= c["tracked_max"], c
        if op.startswith("relu"):  # ReLU6 outputs lie in [0, 6]
            assert c["tracked_min"] >= 0 and c["tracked_max"] <= 6.0 + 1e-5, (op, c)
PY

echo "== interrupted after 3 epochs, then resumed: the same result"
"$shrink" run "$src/configs/quickstart.yaml" --out "$work/b" "${short[@]}" --stop-after-epochs 3 > "$work/b1.log"
[ -s "$work/b/checkpoint.pt" ] || fail "no checkpoint after an interrupted run"
[ ! -e "$work/b/report.json" ] || fail "an interrupted run wrote results"
if "$shrink" run "$src/configs/quickstart.yaml" --out "$work/b" "${short[@]}" --set seed=7 --resume \
    2> "$work/err.txt"; then
  fail "resuming with other settings was accepted"
fi
grep -q "checkpoint.pt: was written by a different experiment" "$work/err.txt" || fail "$(cat "$work/err.txt")"
"$shrink" run "$src/configs/quickstart.yaml" --out "$work/b" "${short[@]}" --resume | tee "$work/b2.log"
grep -q "resuming after finetune epoch 1" "$work/b2.log" || fail "did not resume from finetune epoch 1"
grep -q "^pretrain epoch" "$work/b2.log" && fail "the resumed run trained the fp32 phase again"
/usr/bin/python3 - "$work/a" "$work/b" <<'PY'
import json, math, sys
a, b = sys.argv[1], sys.argv[2]
ra, rb = (json.load(open(d + "/report.json"))["metrics"] for d in (a, b))
assert ra == rb, (ra, rb)
ca, cb = (json.load(open(d + "/calibration.json")) for d in (a, b))
for op in ca:
    for target in ca[op]:
        for key in ("scale", "zero_point", "tracked_min", "tracked_max"):
            x, y = ca[op][target][key], cb[op][target][key]
            assert math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9), (op, target, key, x, y)
print("resumed run matches:", rb)
PY

echo "== a later run into the same folder leaves no stale result beside its own"
"$shrink" run "$src/configs/quickstart.yaml" --out "$work/a/" "${short[@]}" --set pretrain.epochs=0 \
    --set finetune.epochs=0 --set export.model=false --set export.int8=false --set evaluate=false > /dev/null
[ -s "$work/a/report.json" ] && [ -s "$work/a/calibration.json" ] || fail "results missing"
[ ! -e "$work/a/model_qat.pt" ] || fail "a stale model_qat.pt was left beside the new report"
[ ! -e "$work/a/model_int8.pt" ] || fail "a stale model_int8.pt was left beside the new report"
[ ! -e "$work/a/.partial" ] && [ ! -e "$work/a.partial" ] || fail "staging left behind"

echo "== bad input: one line naming file, line and key; non-zero exit; no output"
cp "$src/configs/quickstart.yaml" "$work/bad.yaml"
sed -i 's/^seed: 0/seed: 0\nepochz: 3/' "$work/bad.yaml"
if "$shrink" run "$work/bad.yaml" --out "$work/c" 2> "$work/err.txt"; then fail "unknown key accepted"; fi
cat "$work/err.txt"
grep -q "bad.yaml:[0-9]*:1: epochz: unknown key (allowed: model" "$work/err.txt" || fail "message"
[ "$(grep -c . "$work/err.txt")" -eq 1 ] || fail "more than one line on stderr"
[ ! -e "$work/c" ] || fail "a failed run left an output folder"
if "$shrink" run "$src/configs/quickstart.yaml" --out "$work/c" --set "model=$model_dir/mnist.pt" \
    --set compress.0.plugin=nosuch 2> "$work/err.txt"; then fail "unknown plugin accepted"; fi
grep -q "quickstart.yaml:[0-9]*:[0-9]*: compress\[0\].plugin: no plugin provides algorithm 'nosuch'" "$work/err.txt" \
  || fail "$(cat "$work/err.txt")"
if "$shrink" run "$src/configs/quickstart.yaml" --out "$work/c" --set "model=$model_dir/mnist.pt" \
    --set "compress.0.config_list.0.op_names=[conv7]" 2> "$work/err.txt"; then fail "unknown op accepted"; fi
grep -q "op_names: the model has no op 'conv7'" "$work/err.txt" || fail "$(cat "$work/err.txt")"
if "$shrink" run "$src/configs/quickstart.yaml" --out "$work/c" --resume --set "model=$model_dir/mnist.pt" \
    2> "$work/err.txt"; then fail "resume without a checkpoint accepted"; fi
grep -q "no checkpoint to resume from" "$work/err.txt" || fail "$(cat "$work/err.txt")"
[ ! -e "$work/c/report.json" ] || fail "a failed run left results"
echo "run_cli_test: all passed"
