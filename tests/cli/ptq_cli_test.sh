#!/usr/bin/env bash
# Post-training quantization from YAML: a short fp32 pretraining on real Fashion-MNIST, a
# calibration pass with the ptq plugin (each range estimator), its outputs, and the calibration
# errors a user can make.
# Usage: ptq_cli_test.sh SHRINK_EXE MODEL_DIR SOURCE_DIR
set -euo pipefail
shrink=$1
model_dir=$2
src=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

short=(--set export.int8_only_if_faster=false --set "model=$model_dir/mnist.pt" --set data.train_limit=6400 --set data.test_limit=2000
       --set pretrain.epochs=1)

for estimator in minmax moving_average_minmax percentile mse entropy; do
  echo "== ptq, activations by $estimator"
  "$shrink" run "$src/configs/ptq_quickstart.yaml" --out "$work/$estimator" "${short[@]}" \
    --set "compress.0.options.estimator=$estimator" > "$work/$estimator.log"
  grep -q "^calibrate: ptq on 100 samples (10 batches)" "$work/$estimator.log" || fail "no calibration line"
  grep -q "^model_int8.pt: 3 int8 ops, accuracy" "$work/$estimator.log" || fail "no int8 line"
  grep -q "^lowest site SQNR vs float: .* dB" "$work/$estimator.log" || fail "no per-site SQNR line"
  /usr/bin/python3 - "$work/$estimator" "$estimator" <<'PY'
import json, sys
out, estimator = sys.argv[1], sys.argv[2]
report = json.load(open(out + "/report.json"))
cal = json.load(open(out + "/calibration.json"))
m = report["metrics"]
print(estimator, m)
assert m["baseline_accuracy"] > 0.6, m
# Post-training int8 stays close to fp32 (the quick-start target is 0.1 point on the full run).
assert abs(m["compressed_accuracy"] - m["baseline_accuracy"]) < 0.02, m
assert abs(m["exported_accuracy"] - m["compressed_accuracy"]) <= 0.001, m
assert report["calibration"] == [{"stage": 0, "batches": 10, "samples": 100, "seconds": report["calibration"][0]["seconds"]}], report["calibration"]
assert report["train"]["finetune"]["steps_done"] == 0, report["train"]
# model_int8.pt: the convolutions and linears run int8 kernels; it scores within 0.3 point of
# the fake-quant model (the issue's target; 0.5 here on 2000 samples: 10 of them), its outputs
# close to it; only log_softmax stays float; the file is about a quarter of the fp32 one.
i8 = report["int8"]
assert i8["quantized_ops"] == 3 and i8["engine"] == "onednn", i8
assert i8["int8_ops"] == ["aten::conv2d (conv1)", "aten::conv2d (conv2)", "aten::linear (fc1)"], i8
assert abs(m["int8_accuracy"] - m["compressed_accuracy"]) <= 0.005, m
assert i8["sqnr_db_vs_fake_quant"] > 20, i8
# fc2 (500 -> 10) is faster in float than oneDNN's int8 linear, on its fake-quantized weights.
assert [f.split(" ")[:2] for f in i8["float_ops"]] == [["aten::linear", "(fc2):"], ["aten::log_softmax", "(log_softmax):"]], i8
assert i8["size_ratio"] < 0.27, i8
# fc1 reads the channels-last int8 activation flattened in (h, w, c) order, a view, with its
# weight columns reordered (the outputs' closeness above checks the reordering). Where fc1's input
# site has ranges of its own (clipping estimators), a re-quantize comes between and the flatten
# stays as it was.
assert estimator != "minmax" or any(n.startswith("aten::linear (fc1): flattens its channels-last input without a copy (50 channels")
           for n in i8["notes"]), i8["notes"]
# Per-site quantization SQNR on the calibration samples. Its own noise (local_sqnr_db): with minmax
# ranges (nothing clips on those samples) every int8 site is above 20 dB; estimators that clip lose
# more (moving averages lag the largest batches: relu2 about 15 dB) but stay above 10; a site that
# re-quantizes values already on its grid changes nothing (null). Against the float model
# (sqnr_db), the noise of the sites before it adds up: never better than its own, except by
# rounding; equal where nothing comes before (weights, the first input).
local = {(s["op"], s["target"]): s["local_sqnr_db"] for s in report["sites"]}
sqnr = {(s["op"], s["target"]): s["sqnr_db"] for s in report["sites"]}
print("sqnr vs float", sqnr)
floor = 20 if estimator == "minmax" else 10
assert all(v is None or v > floor for v in local.values()), local
assert all(local[(op, t)] is not None for op in ("conv1", "fc2") for t in ("weight", "_output_0")), local
assert all(v is not None and v > floor - 5 for v in sqnr.values()), sqnr
for key, v in local.items():
    if v is not None:
        assert sqnr[key] <= v + 0.5, (key, sqnr[key], v)
    if key[1] == "weight" or key == ("conv1", "_input_0"):
        assert abs(sqnr[key] - v) < 1e-6, (key, sqnr[key], v)
# fc2's output carries the noise of everything before it: visible where its own noise is well below
# what reaches it (minmax, which clips nothing); an estimator that clips fc2's output (a moving
# average lagging the largest batches) makes its own noise dominate, and the sum shows little.
incoming, own = sqnr[("fc1", "_output_0")], local[("fc2", "_output_0")]
assert estimator != "minmax" or own > incoming + 3, (own, incoming)
if own > incoming + 3:
    assert sqnr[("fc2", "_output_0")] < own - 0.5, ("no accumulated noise at fc2", own, incoming)
for op, targets in cal.items():
    for target, c in targets.items():
        if target == "weight":   # ptq's default: symmetric per output channel
            assert c["quant_scheme"] == "symmetric" and isinstance(c["scale"], list), (op, c)
            assert all(z == 0 for z in c["zero_point"]), (op, c)
        else:                    # activations: affine per tensor
            assert c["quant_scheme"] == "affine" and c["scale"] > 0, (op, c)
            assert c["tracked_min"] <= c["tracked_max"], (op, c)
PY
done
/usr/bin/python3 "$src/tools/models/eval_model.py" "$work/entropy/model_qat.pt" --like "$work/entropy/report.json" > "$work/py.json"
/usr/bin/python3 "$src/tools/models/eval_model.py" "$work/entropy/model_int8.pt" --like "$work/entropy/report.json" > "$work/py8.json"
/usr/bin/python3 - "$work/entropy/report.json" "$work/py.json" "$work/py8.json" <<'PY'
import json, sys
m, py, py8 = json.load(open(sys.argv[1]))["metrics"], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
assert abs(py["accuracy"] - m["exported_accuracy"]) <= 0.001, (py, m)
assert "aten::fake_quantize_per_channel_affine" in py["ops"], py
# Plain PyTorch runs the int8 model (oneDNN engine) to the same accuracy, on real int8 kernels.
assert abs(py8["accuracy"] - m["int8_accuracy"]) <= 0.001, (py8, m)
assert {"quantized::conv2d_relu", "quantized::linear_relu"} <= set(py8["ops"]), py8
# No fake-quantized weights left; the one fake-quant is fc2's output site (fc2 runs in float).
assert [op for op in py8["ops"] if op.startswith("aten::fake_quantize")] == \
    ["aten::fake_quantize_per_tensor_affine"], py8
PY

echo "== shrink export --int8 and shrink bench, as a user runs them"
"$shrink" export "$work/minmax/model_qat.pt" --int8 -o "$work/again_int8.pt" | tee "$work/export.log"
grep -q "^int8: 3 quantized ops" "$work/export.log" || fail "export --int8 summary"
/usr/bin/python3 - "$work/again_int8.pt" "$work/minmax/model_qat.pt" "$work/minmax/report.json" <<'PY'
import json, sys, torch
torch.backends.quantized.engine = "onednn"
int8, fq = torch.jit.load(sys.argv[1]).eval(), torch.jit.load(sys.argv[2]).eval()
notes = json.load(open(sys.argv[3]))["int8"]["notes"]
# Made when the model loads (plain PyTorch here): conv1's 20 filters padded with zero ones to 32
# around the first max pool, conv2 reading 32 channels, fc1 also as a 1x1 convolution for small
# batches. The file holds each weight once: its own int8 weights, not the padded ones.
assert any(n.startswith("2 int8 convolution(s) get zero channels up to 32") for n in notes), notes
assert any(n.startswith("1 int8 linear(s): inputs of at most 4 rows") for n in notes), notes
unpack = torch.ops.quantized.conv2d_unpack
w1, b1 = unpack(int8.int8_padded_conv_0.padded)
w2, _ = unpack(int8.int8_padded_conv_1.padded)
assert w1.shape == (32, 1, 5, 5) and w2.shape == (50, 32, 5, 5), (w1.shape, w2.shape)
assert w1.int_repr()[20:].abs().sum() == 0 and b1[20:].abs().sum() == 0 and w2.int_repr()[:, 20:].abs().sum() == 0
assert unpack(int8.int8_padded_conv_0.packed)[0].shape == (20, 1, 5, 5)
assert unpack(int8.int8_linear_0.small)[0].shape == (500, 800, 1, 1)
# Rows run through the convolution (batches up to 4) or the linear (larger): the same numbers
# (fc2 runs in float, but the fake-quant after it puts its outputs back on the int8 grid).
torch.manual_seed(0)
x = torch.randn(9, 1, 28, 28)
with torch.no_grad():
    whole = int8(x)
    rows = torch.cat([int8(x[i:i + 1]) for i in range(9)])
    assert torch.equal(whole, rows), (whole - rows).abs().max()
    assert torch.equal(int8(x[:4]), whole[:4]) and torch.equal(int8(x[4:9]), whole[4:9])
    a, b = whole, fq(x)
sqnr = 10 * torch.log10(b.pow(2).sum() / (a - b).pow(2).sum())
assert sqnr > 20, float(sqnr)
PY
"$shrink" bench "$model_dir/mnist.pt" --int8 "$work/again_int8.pt" --shape 1,28,28 --batch 1,8 --runs 5 --json \
  | tee "$work/bench.log"
/usr/bin/python3 - "$work/bench.log" <<'PY'
import json, sys
rows = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["results"]
assert [r["batch"] for r in rows] == [1, 8], rows
assert all(r["fp32_ms"] > 0 and r["int8_ms"] > 0 and r["speedup"] > 0 for r in rows), rows
# Warm and cold medians from the same rounds (4 calls a turn: 3 warm, 1 cold).
for r in rows:
    assert r["runs"] == 5 and r["calls_per_run"] == 4, r
    best_cold = min(r["fp32_cold_ms"], r["fp32_frozen_cold_ms"])
    assert r["best_fp32_cold_ms"] == best_cold and r["int8_cold_ms"] > 0, r
    assert abs(r["cold_speedup"] - best_cold / r["int8_cold_ms"]) < 1e-9, r
PY
# oneDNN's instruction set is said, and ONEDNN_MAX_CPU_ISA caps it (AMX left out below).
ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI "$shrink" bench "$model_dir/mnist.pt" --int8 "$work/again_int8.pt" \
  --shape 1,28,28 --batch 1 --runs 2 --json > "$work/bench_capped.log"
/usr/bin/python3 - "$work/bench.log" "$work/bench_capped.log" <<'PY'
import json, sys
full, capped = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
assert full["isa"] and capped["isa"] and capped["isa"] != "AVX512_CORE_AMX", (full["isa"], capped["isa"])
assert full["isa"] != "AVX512_CORE_AMX" or capped["isa"] == "AVX512_CORE_VNNI", capped["isa"]
PY

echo "== reduce_range: activations one bit narrower, weights untouched; the int8 export takes it"
"$shrink" run "$src/configs/ptq_quickstart.yaml" --out "$work/reduced" "${short[@]}" \
  --set compress.0.options.reduce_range=true > "$work/reduced.log"
/usr/bin/python3 - "$work/reduced/report.json" "$work/minmax/report.json" <<'PY'
import json, sys
r, full = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for s in r["sites"]:
    want = (-127, 127) if s["target"] == "weight" else (0, 127) if s["quant_dtype"] == "uint8" else (-63, 63)
    assert (s["quant_min"], s["quant_max"]) == want, s
m, mf = r["metrics"], full["metrics"]
# Half the levels: the activations' scales double, and the int8 model still follows its fake-quant.
scale = {(s["op"], s["target"]): s["scale"] for s in r["sites"]}
scale_full = {(s["op"], s["target"]): s["scale"] for s in full["sites"]}
ratio = scale[("conv1", "_output_0")] / scale_full[("conv1", "_output_0")]
assert 1.9 < ratio < 2.1, ratio
assert r["int8"]["quantized_ops"] == 3, r["int8"]
assert abs(m["int8_accuracy"] - m["compressed_accuracy"]) <= 0.005, m
assert abs(m["compressed_accuracy"] - mf["compressed_accuracy"]) <= 0.02, (m, mf)
PY

echo "== shrink export --fold-bn: a float model, BatchNorm folded; plain PyTorch runs it alike"
/usr/bin/python3 - "$model_dir/mnist.pt" "$work/bn.pt" <<'PY'
import sys, torch
m = torch.jit.load(sys.argv[1])
torch.manual_seed(0)
with torch.no_grad():   # statistics far from the identity
    m.batchnorm1.running_mean.copy_(torch.randn(20)); m.batchnorm1.running_var.copy_(torch.rand(20) + 0.2)
    m.batchnorm1.weight.copy_(torch.randn(20)); m.batchnorm1.bias.copy_(torch.randn(20))
m.save(sys.argv[2])
PY
"$shrink" export "$work/bn.pt" --fold-bn | tee "$work/fold.log"
grep -q "^fold-bn: 1 BatchNorm folded -> $work/bn_folded.pt" "$work/fold.log" || fail "fold-bn summary"
/usr/bin/python3 - "$work/bn.pt" "$work/bn_folded.pt" <<'PY'
import sys, torch
a, b = torch.jit.load(sys.argv[1]).eval(), torch.jit.load(sys.argv[2])
assert "aten::batch_norm" not in str(b.graph), b.graph
x = torch.rand(16, 1, 28, 28)
with torch.no_grad():
    ya, yb = a(x), b(x)
err = float((ya - yb).abs().max() / ya.abs().max())
print("fold-bn: max relative difference", err)
assert err < 1e-4, err
PY
"$shrink" export "$work/bn.pt" > "$work/fold_err.log" 2>&1 && fail "export without --int8/--fold-bn succeeded"
grep -q "one of them" "$work/fold_err.log" || fail "export without a target: no clear error"

echo "== calibration errors: one line naming the file, line and key; no output folder"
expect_error() {  # expect_error NAME PATTERN ARGS...
  local name=$1 pattern=$2
  shift 2
  if "$shrink" run "$@" --out "$work/err_$name" > "$work/err_$name.log" 2>&1; then
    fail "$name: expected a failure"
  fi
  grep -q -- "$pattern" "$work/err_$name.log" || { cat "$work/err_$name.log"; fail "$name: no '$pattern'"; }
  [ ! -e "$work/err_$name" ] || fail "$name: an output folder was left"
}
line=$(grep -n "calibration: {batches" "$src/configs/ptq_quickstart.yaml" | cut -d: -f1)
expect_error too_many "ptq_quickstart.yaml:$line:.*compress\[0\].calibration: 700 batches of 10 need 7000 samples, the training set has 6400" \
  "$src/configs/ptq_quickstart.yaml" "${short[@]}" --set compress.0.calibration.batches=700
expect_error zero "compress\[0\].calibration.batches: 0 is below the minimum 1" \
  "$src/configs/ptq_quickstart.yaml" "${short[@]}" --set compress.0.calibration.batches=0
expect_error missing "plugin 'ptq' is post-training only and needs a calibration pass" \
  "$src/configs/ptq_quickstart.yaml" "${short[@]}" --set compress.0.calibration=null
expect_error qat "compress\[0\].calibration: plugin 'qat' does not calibrate" \
  "$src/configs/ptq_quickstart.yaml" "${short[@]}" --set compress.0.plugin=qat --set compress.0.options={}
expect_error estimator "estimator is 'magic' (allowed: minmax, moving_average_minmax, percentile, mse, entropy)" \
  "$src/configs/ptq_quickstart.yaml" "${short[@]}" --set compress.0.options.estimator=magic

# Data with NaN: the loader names the file before anything runs (no pretraining).
/usr/bin/python3 - "$work/nan.pt" <<'PY'
import sys, torch
x = torch.rand(64, 1, 28, 28)
x[:, 0, 3, 3] = float("nan")
torch.save((x, torch.randint(0, 10, (64,))), sys.argv[1])
PY
expect_error nan "nan.pt: the inputs contain NaN or infinity" \
  "$src/configs/ptq_quickstart.yaml" --set "model=$model_dir/mnist.pt" --set pretrain=null \
  --set data.format=tensors --set "data.path=$work/nan.pt" --set data.test_path=train
# A 4-bit site cannot become int8: said before anything trains.
expect_error four_bit "compress\[0\]: conv1._input_0 is a 4-bit site; export.int8 needs 8-bit sites" \
  "$src/configs/ptq_quickstart.yaml" "${short[@]}" --set compress.0.config_list.0.quant_dtype=int4
expect_error int8_needs_model "export.int8: needs export.model" \
  "$src/configs/ptq_quickstart.yaml" "${short[@]}" --set export.model=false
"$shrink" export "$work/nowhere.pt" --int8 > "$work/export_err.log" 2>&1 && fail "export of a missing file succeeded"
grep -q "nowhere.pt" "$work/export_err.log" || fail "export error does not name the file"
echo "ptq cli: all good"
