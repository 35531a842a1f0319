#!/usr/bin/env bash
# The low-bit plugins from YAML on real Fashion-MNIST (a few hundred steps each): lsq with mixed
# bit widths (first and last layer 8 bits, the rest 4), whose calibration and report say which
# site got what and whose model_qat.pt plain PyTorch scores alike; dorefa; bnn on the Hardtanh net;
# qat with simulated BatchNorm folding (compress[].fold_bn).
# Usage: lowbit_cli_test.sh SHRINK_EXE MODEL_DIR SOURCE_DIR
set -euo pipefail
shrink=$1
model_dir=$2
src=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

short=(--set export.int8_only_if_faster=false --set data.train_limit=6400 --set data.test_limit=2000 --set pretrain.epochs=1
       --set finetune.epochs=1)

cat > "$work/lsq_mixed.yaml" <<YAML
model: $model_dir/mnist.pt
seed: 0
threads: 2
data:
  path: /usr/share/datasets/fashion-mnist
  batch_size: 64
  normalize: {mean: [0.2860], std: [0.3530]}
pretrain: {epochs: 1, optimizer: {name: sgd, lr: 0.01, momentum: 0.9}}
compress:
  - plugin: lsq
    config_list:
      - op_names: [conv1, fc2]          # first and last layer: 8 bits
        target_names: [weight]
        quant_dtype: int8
      - op_names: [conv2, fc1]          # the rest: 4 bits
        target_names: [weight]
        quant_dtype: int4
      - op_names: [relu1, relu2, relu3]
        target_names: [_output_]
        quant_dtype: uint4
finetune: {epochs: 1, optimizer: {name: sgd, lr: 0.01, momentum: 0.9}}
evaluate: true
export: {dir: out}
YAML

echo "== lsq, mixed bit widths"
"$shrink" run "$work/lsq_mixed.yaml" --out "$work/lsq" "${short[@]}" | tee "$work/lsq.log"
/usr/bin/python3 "$src/tools/models/eval_model.py" "$work/lsq/model_qat.pt" --like "$work/lsq/report.json" > "$work/py.json"
/usr/bin/python3 - "$work/lsq" "$work/py.json" <<'PY'
import json, sys
out, py = sys.argv[1], json.load(open(sys.argv[2]))
report, cal = json.load(open(out + "/report.json")), json.load(open(out + "/calibration.json"))
m = report["metrics"]
print(m)
bits = {(s["op"], s["target"]): (s["quant_bits"], s["quant_dtype"], s["quant_min"], s["quant_max"]) for s in report["sites"]}
want = {("conv1", "weight"): (8, "int8", -128, 127), ("fc2", "weight"): (8, "int8", -128, 127),
        ("conv2", "weight"): (4, "int4", -8, 7), ("fc1", "weight"): (4, "int4", -8, 7),
        ("relu1", "_output_0"): (4, "uint4", 0, 15), ("relu2", "_output_0"): (4, "uint4", 0, 15),
        ("relu3", "_output_0"): (4, "uint4", 0, 15)}
assert bits == want, bits
assert cal["conv2"]["weight"]["quant_bits"] == 4 and cal["fc2"]["weight"]["quant_bits"] == 8, cal
# The step sizes trained from their initialisation (2 mean|x| / sqrt(Qp)) and the model learned.
assert m["compressed_accuracy"] > 0.7, m
# model_qat.pt: ATen fake-quantize with the learned step sizes computes what LSQ did.
assert abs(m["exported_accuracy"] - m["compressed_accuracy"]) <= 0.002, m
assert abs(py["accuracy"] - m["exported_accuracy"]) <= 0.001, (py, m)
PY

echo "== dorefa: 4-bit weights (weight_scale max_abs: this net has no BatchNorm after most layers), 8-bit activations in [0, 1]"
cat > "$work/dorefa.yaml" <<YAML
model: $model_dir/mnist.pt
seed: 0
threads: 2
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 64, normalize: {mean: [0.2860], std: [0.3530]}}
pretrain: {epochs: 1, optimizer: {name: sgd, lr: 0.01, momentum: 0.9}}
compress:
  - plugin: dorefa
    options: {weight_scale: max_abs}
    config_list:
      - {op_names: [conv1, conv2, fc1, fc2], target_names: [weight], quant_bits: 4}
      - {op_names: [relu1, relu2, relu3], target_names: [_output_], quant_bits: 8}
finetune: {epochs: 1, optimizer: {name: sgd, lr: 0.01, momentum: 0.9}}
evaluate: true
export: {dir: out, model: false}
YAML
"$shrink" run "$work/dorefa.yaml" --out "$work/dorefa" "${short[@]}" | tee "$work/dorefa.log"
grep -q "^finetune epoch 1/1: loss" "$work/dorefa.log" || fail "dorefa: no fine-tuning"
/usr/bin/python3 - "$work/dorefa/report.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print(m)
assert m["compressed_accuracy"] > 0.6, m
PY
# model_qat.pt needs an exportable plugin: said before anything trains.
if "$shrink" run "$work/dorefa.yaml" --out "$work/dorefa_export" "${short[@]}" --set export.model=true \
    > "$work/dorefa_export.log" 2>&1; then
  fail "dorefa with export.model succeeded"
fi
grep -q "does not export calibration" "$work/dorefa_export.log" || { cat "$work/dorefa_export.log"; fail "no clear error"; }

echo "== bnn on the Hardtanh net: binary weights (conv2, fc1) and activations"
cat > "$work/bnn.yaml" <<YAML
model: $model_dir/mnist_hardtanh.pt
seed: 0
threads: 2
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 64, normalize: {mean: [0.2860], std: [0.3530]}}
pretrain: {epochs: 1, optimizer: {name: adam, lr: 0.001}}
compress:
  - plugin: bnn
    config_list:
      - {op_names: [conv2, fc1], target_names: [weight], quant_bits: 1}
      - {op_names: [relu1, relu2, relu3], target_names: [_output_], quant_bits: 1}
finetune: {epochs: 1, optimizer: {name: adam, lr: 0.001}}
evaluate: true
export: {dir: out, model: false}
YAML
"$shrink" run "$work/bnn.yaml" --out "$work/bnn" "${short[@]}" | tee "$work/bnn.log"
/usr/bin/python3 - "$work/bnn/report.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print(m)
assert m["compressed_accuracy"] > 0.6, m
PY
if "$shrink" run "$work/bnn.yaml" --out "$work/bnn2" "${short[@]}" \
    --set compress.0.config_list.0.quant_bits=2 > "$work/bnn2.log" 2>&1; then
  fail "bnn with 2 bits succeeded"
fi
grep -q "bnn binarizes to 1 bit: set quant_bits: 1 in the config_list entry for conv2.weight (it has quant_bits 2)" "$work/bnn2.log" || { cat "$work/bnn2.log"; fail "no clear error"; }
[ ! -e "$work/bnn2" ] || fail "an output folder was left"
echo "== qat with simulated BatchNorm folding: conv1 + batchnorm1 exported as one folded conv"
"$shrink" run "$src/configs/quickstart.yaml" --out "$work/fold" --set "model=$model_dir/mnist.pt" "${short[@]}" \
  --set compress.0.fold_bn=true | tee "$work/fold.log"
grep -q "^compress: qat on 12 sites (3 merged into the site before them), 1 BatchNorm folded (conv1 + batchnorm1)" "$work/fold.log" || fail "no fold line"
/usr/bin/python3 - "$work/fold" <<'PY'
import json, sys, torch
out = sys.argv[1]
report = json.load(open(out + "/report.json"))
m = report["metrics"]
print(m, report["folded_batchnorms"])
assert report["folded_batchnorms"] == ["conv1 + batchnorm1"], report["folded_batchnorms"]
assert abs(m["exported_accuracy"] - m["compressed_accuracy"]) <= 0.002, m
assert report["int8"]["quantized_ops"] == 3 and abs(m["int8_accuracy"] - m["compressed_accuracy"]) <= 0.005, m
qat = torch.jit.load(out + "/model_qat.pt")
assert "aten::batch_norm" not in str(qat.graph), "model_qat.pt still runs the BatchNorm"
PY
echo "low-bit cli: all good"
