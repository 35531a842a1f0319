#!/usr/bin/env bash
# Pruning from YAML on real Fashion-MNIST (a few hundred steps each): configs/prune_then_quantize.yaml
# shortened (l1_norm on AGP, remove_channels, qat, int8 export) with its outputs checked in Python
# (masks.pt, the held masks, the smaller model, the report's tables); taylor, slim (global, with
# its L1 penalty), fpgm and level stages; and the errors, each one line, nothing written.
# Usage: prune_cli_test.sh SHRINK_EXE MODEL_DIR SOURCE_DIR
set -euo pipefail
shrink=$1
model_dir=$2
src=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

short=(--set export.int8_only_if_faster=false --set "model=$model_dir/mnist.pt" --set data.train_limit=6400 --set data.test_limit=2000
       --set pretrain.epochs=1 --set compress.0.train.epochs=1 --set finetune.epochs=1)

echo "== configs/prune_then_quantize.yaml, shortened"
"$shrink" run "$src/configs/prune_then_quantize.yaml" "${short[@]}" --out "$work/ptq" | tee "$work/ptq.log"
for n in 1 2 3 4; do
  grep -q "^compress\[0\] masks $n/4: weight sparsity" "$work/ptq.log" || fail "no AGP update $n"
done
grep -q "^compress\[1\]: removed .*outputs as before" "$work/ptq.log" || fail "no removal line"
/usr/bin/python3 - "$work/ptq" "$model_dir/mnist.pt" <<'PY'
import json, sys, torch
out, original = sys.argv[1], sys.argv[2]
r = json.load(open(out + "/report.json"))
p = r["pruning"][0]
# AGP reached the target exactly; half of each layer's filters are gone; batchnorm1 followed conv1.
assert p["plugin"] == "l1_norm" and p["schedule"] == {"kind": "agp", "updates": 4}, p
for op in p["ops"]:
    assert op["weight_sparsity"] == 0.5 and op["channels_pruned"] * 2 == op["channels"], op
assert p["batchnorms_following"] == [{"op": "batchnorm1", "follows": "conv1"}], p
cr = r["channel_removal"]
assert cr["max_output_difference"] <= 1e-4, cr
assert cr["parameters_after"] < 0.3 * cr["parameters_before"], cr
assert cr["macs_after"] < 0.35 * cr["macs_before"], cr
sizes = {m["op"]: (m["out_after"], m["in_after"]) for m in cr["modules"]}
assert sizes["conv1"][0] == 10 and sizes["conv2"] == (25, 10) and sizes["fc1"] == (250, 400), sizes
# masks.pt: torch.load reads it; masks in the original model's shapes.
masks = torch.load(out + "/masks.pt")
assert set(masks) == {"conv1", "conv2", "fc1", "batchnorm1"}, masks.keys()
assert masks["conv1"]["weight_mask"].shape == (20, 1, 5, 5) and masks["fc1"]["weight_mask"].shape == (500, 800)
assert masks["conv1"]["bias_mask"].sum() == 10 and torch.equal(masks["batchnorm1"]["weight_mask"], masks["conv1"]["bias_mask"])
# The smaller model in plain PyTorch: QAT trained on it, int8 lowered from it.
q = torch.jit.load(out + "/model_qat.pt")
w = dict(q.named_parameters())
assert w["conv1.weight"].shape == (10, 1, 5, 5) and w["fc1.weight"].shape == (250, 400), {k: v.shape for k, v in w.items()}
assert r["int8"]["quantized_ops"] == 3 and r["int8"]["size_ratio"] < 0.1, r["int8"]
m = r["metrics"]
assert abs(m["int8_accuracy"] - m["compressed_accuracy"]) <= 0.005, m
assert p["accuracy"] > 0.6 and m["compressed_accuracy"] > 0.6, (p, m)
PY

cat > "$work/stages.yaml" <<YAML
model: $model_dir/mnist.pt
seed: 0
threads: 2
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 64, train_limit: 3200, test_limit: 1000,
       normalize: {mean: [0.2860], std: [0.3530]}}
pretrain: {epochs: 1, optimizer: {name: sgd, lr: 0.01, momentum: 0.9}}
compress:
  - plugin: taylor                  # ranks by outputs x gradients: masks at the end of each stretch
    config_list: [{op_names: [conv2], sparse_ratio: 0.4}]
    schedule: {kind: linear, updates: 2}
    train: {steps: 20, optimizer: {name: sgd, lr: 0.01, momentum: 0.9}}
  - plugin: slim                    # BatchNorm scales, global; L1 penalty while it trains
    options: {scale: 0.001}
    config_list: [{op_types: [BatchNorm2d], total_sparsity: 0.25}]
    train: {steps: 10, optimizer: {name: sgd, lr: 0.01}}
  - plugin: fpgm
    config_list: [{op_names: [fc1], sparse_ratio: 0.2}]
  - plugin: level
    config_list: [{op_names: [fc2], sparsity: 0.5}]
export: {dir: out}
YAML
echo "== taylor, slim, fpgm, level in one experiment; --print-plan first"
"$shrink" run "$work/stages.yaml" --print-plan > "$work/plan.log"
grep -q "compress  \[0\] taylor (.*): prunes 1 ops, linear schedule, 2 mask updates" "$work/plan.log" || { cat "$work/plan.log"; fail "plan"; }
grep -q "batchnorm1 (BatchNorm2d) total_sparsity 0.25" "$work/plan.log" || fail "plan: slim target"
[ ! -e "$work/out" ] || fail "--print-plan wrote results"
"$shrink" run "$work/stages.yaml" --out "$work/stages" | tee "$work/stages.log"
/usr/bin/python3 - "$work/stages" <<'PY'
import json, sys, torch
out = sys.argv[1]
r = json.load(open(out + "/report.json"))
by = {p["plugin"]: p for p in r["pruning"]}
assert [p["plugin"] for p in r["pruning"]] == ["taylor", "slim", "fpgm", "level"], r["pruning"]
assert by["taylor"]["ops"][0]["channels_pruned"] == 20, by["taylor"]       # 50 * 0.4
assert by["slim"]["ops"][0]["channels_pruned"] == 5, by["slim"]            # 20 * 0.25
assert by["fpgm"]["ops"][0]["channels_pruned"] == 100, by["fpgm"]          # 500 * 0.2
assert by["level"]["ops"][0]["weight_sparsity"] == 0.5 and by["level"]["ops"][0]["channels_pruned"] == 0, by["level"]
# Pruning only: no calibration.json (it would be empty), no BatchNorm folding, no fine-tuning
# epoch time (null, not 0).
import os
assert not os.path.exists(out + "/calibration.json"), os.listdir(out)
assert r["folded_batchnorms"] == [], r["folded_batchnorms"]
assert r["train"]["compressed_seconds_per_epoch"] is None and r["train"]["overhead"] is None, r["train"]
# Every stage's masks still hold in the exported model (later stages trained with them). taylor's
# taps on conv2's output (shrink::tap, which plain PyTorch could not load) are gone.
model = torch.jit.load(out + "/model_pruned.pt")
assert not [n.kind() for n in model.graph.nodes() if n.kind().startswith("shrink::")], model.graph
w = dict(model.named_parameters())
masks = torch.load(out + "/masks.pt")
for op, m in masks.items():
    assert (w[op + ".weight"] * (1 - m["weight_mask"])).abs().max() == 0, op
print("pruned model reloaded; masks hold for", sorted(masks))
PY

echo "== pruning, then QAT fine-tuning interrupted and resumed: the same result, the masks held"
cat > "$work/resume.yaml" <<YAML
model: $model_dir/mnist.pt
seed: 0
threads: 2
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 64, train_limit: 1600, test_limit: 500,
       normalize: {mean: [0.2860], std: [0.3530]}}
pretrain: {epochs: 1, optimizer: {name: sgd, lr: 0.01, momentum: 0.9}}
compress:
  - plugin: l2_norm
    config_list: [{op_names: [conv2, fc1], sparse_ratio: 0.5}]
  - plugin: qat
    config_list: [{op_names: [conv1, conv2, fc1, fc2], target_names: [weight], quant_dtype: int8}]
finetune: {epochs: 2, optimizer: {name: sgd, lr: 0.01, momentum: 0.9}}
export: {dir: out}
YAML
"$shrink" run "$work/resume.yaml" --out "$work/whole" > "$work/whole.log"
"$shrink" run "$work/resume.yaml" --out "$work/parts" --stop-after-epochs 2 > "$work/parts1.log"
"$shrink" run "$work/resume.yaml" --out "$work/parts" --resume > "$work/parts2.log"
grep -q "resuming after finetune epoch 1" "$work/parts2.log" || { cat "$work/parts2.log"; fail "no resume"; }
/usr/bin/python3 - "$work/whole" "$work/parts" <<'PY'
import json, sys, torch
a, b = (json.load(open(d + "/report.json")) for d in sys.argv[1:3])
assert a["metrics"] == b["metrics"], (a["metrics"], b["metrics"])
# The resumed run's pruning table comes from the restored masks: the same, but for the accuracy
# measured after the stage, which only the first run saw.
pa, pb = a["pruning"][0], b["pruning"][0]
assert pa["ops"] == pb["ops"] and pa["weight_sparsity"] == pb["weight_sparsity"] == 0.5, (pa, pb)
ma, mb = (torch.load(d + "/masks.pt") for d in sys.argv[1:3])
assert all(torch.equal(ma[k]["weight_mask"], mb[k]["weight_mask"]) for k in ma), "masks differ"
w = dict(torch.jit.load(sys.argv[2] + "/model_qat.pt").named_parameters())
for op in ("conv2", "fc1"):
    assert (w[op + ".weight"] * (1 - mb[op]["weight_mask"])).abs().max() == 0, op
print("resumed run matches:", b["metrics"])
PY

echo "== errors: one line each, nothing written"
expect_error() {  # expect_error NAME PATTERN YAML_FILE ARGS...
  local name=$1 pattern=$2
  shift 2
  if "$shrink" run "$@" --out "$work/err_$name" > "$work/err_$name.log" 2>&1; then
    fail "$name: expected a failure"
  fi
  grep -q -- "$pattern" "$work/err_$name.log" || { cat "$work/err_$name.log"; fail "$name: no '$pattern'"; }
  [ ! -e "$work/err_$name" ] || fail "$name: an output folder was left"
}
y="$work/stages.yaml"
expect_error ratio "sparse_ratio is 1.5, expected a value in \[0, 1)" "$y" --set "compress.0.config_list.0.sparse_ratio=1.5"
expect_error op_type "plugin 'slim' cannot prune op 'conv1' of type Conv2d (it handles BatchNorm2d)" "$y" \
  --set 'compress.1.config_list=[{op_names: [conv1], sparse_ratio: 0.5}]'
expect_error schedule_needs_training "compress\[2\].schedule: a agp schedule spreads its updates over the stage's training" \
  "$y" --set 'compress.2.schedule={kind: agp}'
expect_error taylor_needs_training "'taylor' ranks by what it observes in training" "$y" --set compress.0.train=null \
  --set 'compress.0.schedule=null'
expect_error taylor_after_quantization "'taylor' observes the pruned ops' outputs in training, which cannot come after a quantization stage" \
  "$y" --set 'compress.0={plugin: qat, config_list: [{op_names: [conv1], quant_dtype: int8}]}' \
  --set 'compress.1={plugin: taylor, config_list: [{op_names: [conv2], sparse_ratio: 0.4}], train: {steps: 5, optimizer: {name: sgd, lr: 0.01}}}'
expect_error kind "compress\[0\].schedule.kind: 'cubic' (allowed: one_shot, linear, agp)" "$y" --set 'compress.0.schedule.kind=cubic'
expect_error quant_key "quant_bits is not a pruning key" "$y" --set 'compress.2.config_list.0.quant_bits=8'
expect_error pruning_key_in_qat "sparse_ratio is a pruning key; 'qat' quantizes" "$src/configs/prune_then_quantize.yaml" \
  "${short[@]}" --set 'compress.2.config_list.0.sparse_ratio=0.5'
expect_error removal_first "compress\[0\].remove_channels: no pruning stage before it" "$y" \
  --set 'compress.0={remove_channels: true}'
expect_error removal_after_qat "put it before the quantization stages" "$src/configs/prune_then_quantize.yaml" \
  "${short[@]}" --set 'compress.1={plugin: qat, config_list: [{op_names: [conv1], quant_dtype: int8}]}' \
  --set 'compress.2={remove_channels: true}'
expect_error global_level_unknown "unknown key 'sparse'" "$y" --set 'compress.3.config_list.0.sparse=0.5'
"$shrink" run "$src/configs/prune_then_quantize.yaml" "${short[@]}" --out "$work/ptq" --resume > "$work/resume.log" 2>&1 \
  && fail "resume with remove_channels succeeded"
grep -q "an experiment with remove_channels cannot resume" "$work/resume.log" || { cat "$work/resume.log"; fail "resume message"; }
echo "all prune CLI checks passed"
