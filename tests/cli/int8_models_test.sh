#!/usr/bin/env bash
# Real architectures nobody wrote for this project, end to end: torchvision's resnet18 and
# mobilenet_v2 (scripted, 3x32x32 Fashion-MNIST), a few training steps so that their outputs mean
# something, post-training calibration on a few batches, int8 export; plain PyTorch reloads the
# int8 model and its outputs stay close to the fake-quant model's.
# Usage: int8_models_test.sh SHRINK_EXE MODEL_DIR
set -euo pipefail
shrink=$1
model_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$work/ptq.yaml" <<YAML
model: $model_dir/resnet18.pt
seed: 0
threads: 2
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 16, test_batch_size: 64, resize: 32, channels: 3,
       train_limit: 256, test_limit: 128, normalize: {mean: [0.286, 0.286, 0.286], std: [0.353, 0.353, 0.353]}}
pretrain: {steps: 16, optimizer: {name: adam, lr: 0.001}}
compress:
  - plugin: ptq
    calibration: {batches: 4}
    config_list:
      - op_types: [Conv2d, Linear]
        target_names: [_input_, weight]
      - op_types: [BatchNorm2d, ReLU, ReLU6, add, Linear]
        target_names: [_output_]
export: {dir: out, int8: true, int8_only_if_faster: false}  # the lowering, whatever its speed
YAML

# model, int8 ops expected (convolutions + residual adds; the small classifier runs in float)
for spec in "resnet18 28" "mobilenet_v2 62"; do
  set -- $spec
  name=$1 ops=$2
  echo "== $name"
  "$shrink" run "$work/ptq.yaml" --out "$work/$name" --set "model=$model_dir/$name.pt" | grep -v "^  float" | tail -4
  /usr/bin/python3 - "$work/$name" "$ops" <<'PY'
import json, sys, torch
out, ops = sys.argv[1], int(sys.argv[2])
report = json.load(open(out + "/report.json"))
i8 = report["int8"]
print({k: i8[k] for k in ("quantized_ops", "sqnr_db_vs_fake_quant", "size_ratio")}, report["metrics"])
assert i8["quantized_ops"] == ops, i8
assert i8["sqnr_db_vs_fake_quant"] > 20, i8
assert i8["size_ratio"] < 0.3, i8
torch.backends.quantized.engine = "onednn"
int8 = torch.jit.load(out + "/model_int8.pt").eval()
fq = torch.jit.load(out + "/model_qat.pt").eval()
kinds = {n.kind() for n in int8.graph.nodes()}
assert {"quantized::conv2d_relu", "quantized::conv2d"} <= kinds, kinds
assert any("aten::linear" in f and "faster than oneDNN's int8 linear" in f for f in i8["float_ops"]), i8
assert "quantized::add_relu" in kinds or "quantized::add" in kinds, kinds
# No fake-quantized weights and no BatchNorm left; the classifier's output site (it runs in
# float) is one fake-quant in place of a quantize/dequantize pair.
assert not any(k == "aten::fake_quantize_per_channel_affine" or k == "aten::batch_norm" for k in kinds), kinds
fq_nodes = [n for n in int8.graph.nodes() if n.kind() == "aten::fake_quantize_per_tensor_affine"]
assert len(fq_nodes) <= 1 and all(next(n.inputs()).node().kind() == "aten::linear" for n in fq_nodes), fq_nodes
torch.manual_seed(0)
x = torch.randn(8, 3, 32, 32)
with torch.no_grad():
    a, b = int8(x), fq(x)
assert a.shape == (8, 10) and b.std() > 0, (a.shape, b.std())
sqnr = 10 * torch.log10(b.pow(2).sum() / (a - b).pow(2).sum().clamp_min(1e-30))
print("python: outputs SQNR vs fake-quant", float(sqnr), "dB")
assert sqnr > 15, float(sqnr)
PY
done
echo "int8 models: all good"
