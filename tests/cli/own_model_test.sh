#!/usr/bin/env bash
# The experimenter's path (issue 16) on a model written as people write them: own_cifar (stem conv,
# BatchNorm and F.relu, two residual blocks F.relu(x + block(x)), a depthwise-separable pair,
# F.adaptive_avg_pool2d, dropout, a linear head), scripted and traced, on 3x32x32 Fashion-MNIST.
#   1. QAT with the quick start's pattern (every conv's _input_ and _output_), BatchNorms folded,
#      int8 export: one quantization point per tensor, and the latency against the best fp32.
#   2. Prune 50 % -> remove channels -> QAT -> int8: model_pruned.pt too, the pruning table.
#   3. The float comparison run (the same extra training, no compression) is one --set away.
#   4. The traced model through post-training int8 as the scripted one.
# Usage: own_model_test.sh SHRINK_EXE MODEL_DIR
set -euo pipefail
shrink=$1
model_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$work/qat.yaml" <<YAML
model: $model_dir/own_cifar.pt
seed: 0
threads: 2
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 32, test_batch_size: 128, resize: 32, channels: 3,
       train_limit: 512, test_limit: 256, normalize: {mean: [0.286, 0.286, 0.286], std: [0.353, 0.353, 0.353]}}
pretrain: {steps: 16, optimizer: {name: adam, lr: 0.001}}
compress:
  - plugin: qat
    fold_bn: true
    config_list:
      - op_types: [Conv2d]
        target_names: [_input_, weight, _output_]
      - op_types: [add]
        target_names: [_output_]
      - op_types: [Linear]
        target_names: [_input_, weight]
finetune: {steps: 8}
export: {dir: out, int8: true, int8_only_if_faster: false}  # the lowering, whatever its speed
YAML

echo "== 1. QAT, each conv's input and output quantized: one point per tensor"
"$shrink" run "$work/qat.yaml" --print-plan > "$work/plan.txt"
grep -q "res1.block.0._input_0 merged into stem_conv._output_0: the same tensor through relu" "$work/plan.txt" \
  || { cat "$work/plan.txt"; fail "the plan does not say which sites merge"; }
grep -q "^  latency   model_int8.pt vs the fp32 model" "$work/plan.txt" || fail "the plan does not say it times"
"$shrink" run "$work/qat.yaml" --out "$work/qat" > "$work/qat.log"
grep -Eq "^  latency, batch 1, 1 thread: best fp32 [0-9.]+ ms \((as loaded|frozen \+ optimize_for_inference)\); int8 [0-9.]+ ms: [0-9.]+x, (faster than|about as fast as|SLOWER than) the best fp32 \([0-9.]+x cold\)(; int8 without AMX \(ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI\) [0-9.]+x \([0-9.]+x cold\))?$" "$work/qat.log" \
  || { cat "$work/qat.log"; fail "no latency line in the summary"; }
grep -q "^  latency, batch 32, 1 thread" "$work/qat.log" || fail "no latency line at the training batch"
/usr/bin/python3 - "$work/qat" <<'PY'
import json, sys, torch
out = sys.argv[1]
r = json.load(open(f"{out}/report.json"))
merged = {(p["site"], p["into"]) for p in r["shared_points"] if p["merged"]}
# The F.relu after the stem's BatchNorm and the blocks' ReLU modules keep their input's grid; the
# residual adds' outputs feed the next block through F.relu.
assert ("res1.block.0._input_0", "stem_conv._output_0") in merged, merged
assert ("res1.block.3._input_0", "res1.block.0._output_0") in merged, merged
assert ("res2.block.0._input_0", "res1.add._output_0") in merged, merged
assert ("dw._input_0", "res2.add._output_0") in merged, merged
assert all(p["conflict"] is None for p in r["shared_points"]), r["shared_points"]
sites = {(s["op"], s["target"]) for s in r["sites"]}
assert not any(s in sites for s in merged), sites & merged
# In the int8 graph no tensor between two int8 ops is dequantized and quantized again.
torch.backends.quantized.engine = "onednn"
int8 = torch.jit.load(f"{out}/model_int8.pt").eval()
def nodes(block):
    for n in block.nodes():
        yield n
        for b in n.blocks():
            yield from nodes(b)
requantized = [n for n in nodes(int8.inlined_graph) if n.kind() == "aten::quantize_per_tensor"
               and next(n.inputs()).node().kind() == "aten::dequantize"]
assert not requantized, requantized
i8 = r["int8"]
assert i8["quantized_ops"] == 9 and sum(op.startswith("aten::add (") for op in i8["int8_ops"]) == 2, i8["int8_ops"]
lat = r["latency"]
assert lat["threads"] == 1 and [row["batch"] for row in lat["rows"]] == [1, 32], lat
for row in lat["rows"]:
    assert row["best_fp32_ms"] == min(row["fp32_ms"], row["fp32_frozen_ms"]), row
    assert abs(row["int8_speedup"] - row["best_fp32_ms"] / row["int8_best_ms"]) < 1e-9, row
    assert row["best_fp32_cold_ms"] == min(row["fp32_cold_ms"], row["fp32_frozen_cold_ms"]), row
    assert abs(row["int8_cold_speedup"] - row["best_fp32_cold_ms"] / row["int8_cold_ms"]) < 1e-9, row
# On oneDNN's AMX kernels the int8 model is timed again in a child process capped below AMX.
assert lat["isa"], lat
for row in lat["rows"]:
    if lat["isa"] != "AVX512_CORE_AMX":
        assert "without_amx" not in row, row
        continue
    other = row["without_amx"]
    assert other["isa"] == "AVX512_CORE_VNNI" and other["int8_ms"] > 0 and other["best_fp32_ms"] > 0, other
    assert abs(other["int8_speedup"] - other["best_fp32_ms"] / other["int8_ms"]) < 1e-9, other
h = r["train"]["history"]
assert [(e["phase"], e["epoch"]) for e in h] == [("pretrain", 1), ("finetune", 1)], h
assert all(e["loss"] > 0 and 0 <= e["accuracy"] <= 1 for e in h), h
log = open(f"{out}/run.log").read()
assert "pretrain epoch 1/1: loss" in log and "latency, batch 32" in log, log
print("qat ok:", i8["quantized_ops"], "int8 ops;", [round(row["int8_speedup"], 2) for row in lat["rows"]])
PY

echo "== 2. prune 50 %, remove channels, QAT, int8: the pruned float model and the pruning table"
cat > "$work/prune.yaml" <<YAML
$(sed -n '/^model:/,/^pretrain:/p' "$work/qat.yaml")
compress:
  - plugin: l1_norm
    config_list:
      - op_types: [Conv2d]
        sparse_ratio: 0.5
  - remove_channels: true
  - plugin: qat
    fold_bn: true
    config_list:
      - op_types: [Conv2d]
        target_names: [_input_, weight, _output_]
finetune: {steps: 8}
export: {dir: out, int8: true, int8_only_if_faster: false}  # the lowering, whatever its speed
YAML
"$shrink" run "$work/prune.yaml" --out "$work/prune" > "$work/prune.log"
grep -Eq "^  accuracy .*model_int8.pt [0-9.]+, model_pruned.pt [0-9.]+$" "$work/prune.log" \
  || { cat "$work/prune.log"; fail "no pruned accuracy in the summary"; }
grep -Eq "^  latency, batch 1, .*; pruned [0-9.]+ ms: " "$work/prune.log" || fail "the pruned model is not timed"
/usr/bin/python3 - "$work/prune" <<'PY'
import json, sys, torch
out = sys.argv[1]
r = json.load(open(f"{out}/report.json"))
assert r["metrics"]["pruned_accuracy"] is not None, r["metrics"]
rows = {row["op"]: row for row in r["pruning"][0]["ops"]}
# The residual stream's producers and the depthwise conv that reads it share one mask, and every
# channel the mask prunes goes.
assert rows["dw"]["shares_mask_with"] == ["stem_conv", "res1.block.3", "res2.block.3"], rows["dw"]
for op in ("stem_conv", "dw", "res1.block.0", "pw"):
    assert rows[op]["channels_removed"] == rows[op]["channels_pruned"] and rows[op]["kept_pruned"] is None, rows[op]
pruned = torch.jit.load(f"{out}/model_pruned.pt").eval()
assert pruned.dw.weight.shape[0] == 16 and pruned.pw.weight.shape == (32, 16, 1, 1), pruned.pw.weight.shape
assert not any(n.kind() == "aten::fake_quantize_per_tensor_affine" for n in pruned.inlined_graph.nodes())
assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)
row = r["latency"]["rows"][0]
assert row["pruned_best_ms"] > 0 and row["int8_best_ms"] > 0, row
print("prune ok:", r["metrics"])
PY

echo "== 3. the float comparison: the same pretraining and extra training, no compression"
"$shrink" run "$work/qat.yaml" --out "$work/float" --set 'compress=[]' --set export.int8=false > "$work/float.log"
/usr/bin/python3 - "$work/float" "$work/qat" <<'PY'
import json, sys
f, q = (json.load(open(f"{d}/report.json")) for d in sys.argv[1:3])
assert f["metrics"]["baseline_accuracy"] == q["metrics"]["baseline_accuracy"], (f["metrics"], q["metrics"])
assert [(e["phase"], e["epoch"]) for e in f["train"]["history"]] == [("pretrain", 1), ("finetune", 1)]
assert f["metrics"]["compressed_accuracy"] is not None and f["latency"] is None, f["metrics"]
print("float fine-tune", f["metrics"]["compressed_accuracy"], "vs qat", q["metrics"]["compressed_accuracy"])
PY

echo "== 4. the traced model through post-training int8, as the scripted one"
for variant in own_cifar own_cifar_traced; do
  "$shrink" run "$work/qat.yaml" --out "$work/$variant" --set "model=$model_dir/$variant.pt" \
    --set 'compress=[{plugin: ptq, calibration: {batches: 4}, config_list: [{op_types: [Conv2d, Linear], target_names: [_input_, weight]}, {op_types: [BatchNorm2d, add, relu], target_names: [_output_]}]}]' \
    --set pretrain.steps=4 --set 'finetune=null' --set export.latency=false > "$work/$variant.log" \
    || { cat "$work/$variant.log"; fail "ptq on $variant"; }
done
/usr/bin/python3 - "$work/own_cifar" "$work/own_cifar_traced" <<'PY'
import json, sys
s, t = (json.load(open(f"{d}/report.json")) for d in sys.argv[1:3])
assert s["int8"]["quantized_ops"] == t["int8"]["quantized_ops"] >= 7, (s["int8"]["int8_ops"], t["int8"]["int8_ops"])
assert len(s["sites"]) == len(t["sites"]), (len(s["sites"]), len(t["sites"]))
print("traced ok:", t["int8"]["quantized_ops"], "int8 ops")
PY
echo "own_model_test: all passed"
