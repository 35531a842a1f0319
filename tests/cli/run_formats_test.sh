#!/usr/bin/env bash
# `shrink run` beyond the quick start: data from a torch.save((inputs, targets)) file, Adam/AdamW
# with schedules, steps instead of epochs, per-channel weights, int4/uint8 and plugin options; and
# torchvision's resnet18 on Fashion-MNIST resized to 32x32 and replicated to 3 channels, with its
# residual `add` ops as sites. Each exported model is re-scored by plain PyTorch.
# Usage: run_formats_test.sh SHRINK_EXE MODEL_DIR SOURCE_DIR
set -euo pipefail
shrink=$1
model_dir=$2
src=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

/usr/bin/python3 - "$work/data.pt" <<'PY'
import sys, torch
torch.manual_seed(0)
x = torch.randint(0, 256, (96, 28, 28), dtype=torch.uint8)
y = (x.float().mean((1, 2)) > 127.5).long()
torch.save((x, y), sys.argv[1])
PY

echo "== tensors file, adam + cosine, adamw + step, per-channel uint8 weights, int4 activations"
cat > "$work/tensors.yaml" <<YAML
model: $model_dir/mnist.pt
seed: 3
data: {format: tensors, path: data.pt, test_path: train, batch_size: 16, test_batch_size: 32, normalize: {mean: [0.5], std: [0.25]}}
pretrain: {steps: 12, optimizer: {name: adam, lr: 0.001}, scheduler: {name: cosine, eta_min: 0.0001}}
compress:
  - plugin: qat
    options: {ema_decay: 0.9}
    config_list:
      - op_types: [Conv2d, Linear]
        target_names: [weight]
        quant_dtype: uint8
        quant_scheme: symmetric
        granularity: per_channel
      - op_types: [Conv2d, Linear]
        target_names: [_input_, _output_]
        quant_dtype: int4
finetune: {epochs: 2, optimizer: {name: adamw, lr: 0.001, weight_decay: 0.01}, scheduler: {name: step, step_size: 1, gamma: 0.5}}
export: {dir: out}
YAML
"$shrink" run "$work/tensors.yaml" | tee "$work/tensors.log"
grep -q "^pretrain epoch 2/2: .*lr 0.00055," "$work/tensors.log" || fail "cosine schedule"
grep -q "^finetune epoch 2/2: .*lr 0.0005," "$work/tensors.log" || fail "step schedule"
/usr/bin/python3 "$src/tools/models/eval_model.py" "$work/out/model_qat.pt" --tensors "$work/data.pt" \
    --mean 0.5 --std 0.25 > "$work/py.json"
/usr/bin/python3 - "$work/out" "$work/py.json" <<'PY'
import json, sys
out, py = sys.argv[1], json.load(open(sys.argv[2]))
report, cal = (json.load(open(f"{out}/{f}.json")) for f in ("report", "calibration"))
m = report["metrics"]
assert report["train"]["pretrain"]["steps_done"] == 12, report["train"]
assert report["train"]["finetune"]["epochs_done"] == 2, report["train"]
assert abs(py["accuracy"] - m["exported_accuracy"]) < 1e-9 and m["exported_accuracy"] == m["compressed_accuracy"], (py, m)
assert "aten::fake_quantize_per_channel_affine" in py["ops"], py
w = cal["conv1"]["weight"]
assert isinstance(w["scale"], list) and len(w["scale"]) == 20, w  # one per output channel
assert w["quant_dtype"] == "uint8" and w["quant_scheme"] == "symmetric" and set(w["zero_point"]) == {127.0}, w
a = cal["fc1"]["_input_0"]
assert a["quant_dtype"] == "int4" and a["quant_bits"] == 4 and -7 <= a["zero_point"] <= 7, a
assert len(report["sites"]) == 12, len(report["sites"])
print("tensors run ok:", m)
PY

echo "== resnet18, 3x32x32 from Fashion-MNIST, residual adds quantized"
cat > "$work/resnet.yaml" <<YAML
model: $model_dir/resnet18.pt
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 32, test_batch_size: 64, resize: 32, channels: 3,
       train_limit: 128, test_limit: 128, normalize: {mean: [0.286, 0.286, 0.286], std: [0.353, 0.353, 0.353]}}
pretrain: {steps: 2}
compress:
  - plugin: qat
    config_list:
      - op_types: [default]
        target_names: [weight, _input_]
      - op_types: [add]
        target_names: [_output_]
finetune: {steps: 2}
export: {dir: out}
YAML
"$shrink" run "$work/resnet.yaml" --print-plan | tee "$work/plan.txt"
grep -q "layer4.1.add._output_0 int8 default default" "$work/plan.txt" || fail "plan lacks the residual add"
"$shrink" run "$work/resnet.yaml"
/usr/bin/python3 - "$work/out" <<'PY'
import json, sys, torch
out = sys.argv[1]
report, cal = (json.load(open(f"{out}/{f}.json")) for f in ("report", "calibration"))
# 21 conv/linear x (weight, input) + 8 adds, less the 10 inputs that read an add's output through
# its ReLU (the next block's conv1 and downsample): one site quantizes each such tensor.
assert len(report["sites"]) == 40, len(report["sites"])
merged = [p for p in report["shared_points"] if p["merged"]]
assert len(merged) == 10 and {"site": "layer2.0.downsample.0._input_0", "into": "layer1.1.add._output_0",
                              "through": ["relu"], "merged": True, "range_only": False,
                              "conflict": None} in merged, merged
for block in ("layer1.0", "layer1.1", "layer4.1"):
    assert cal[f"{block}.add"]["_output_0"]["scale"] > 0, cal[f"{block}.add"]
    assert cal[f"{block}.conv1"]["weight"]["scale"] != cal[f"{block}.conv2"]["weight"]["scale"]
m = report["metrics"]
assert m["exported_accuracy"] == m["compressed_accuracy"], m
model = torch.jit.load(f"{out}/model_qat.pt")
assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
print("resnet18 run ok:", m)
PY
echo "run_formats_test: all passed"
