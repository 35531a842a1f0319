#!/usr/bin/env bash
# The int8_onednn preset end to end: no hand-written config_list, the sites the int8 lowering
# consumes placed by Shrink.
#   1. zoo_small (SiLU, squeeze-excitation, a densenet block, a shufflenet unit, hardsigmoid, mean)
#      through post-training int8: every placed op lowered, the classifier the only float op,
#      PyTorch reloads it; the plan and `shrink inspect` say why each site is there.
#   2. QAT with the preset (BatchNorm folding in training) lowers as well.
#   3. resnet18: the same 28 int8 ops as the hand-written config_list of int8_models_test.sh.
#   4. A hand-written entry wins where it speaks; bad input is one line before anything runs.
#   5. Only where it pays: zoo_small's int8 model, slower than its fp32 here, is not written.
# Usage: int8_preset_test.sh SHRINK_EXE MODEL_DIR
set -euo pipefail
shrink=$1
model_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$work/ptq.yaml" <<YAML
model: $model_dir/zoo_small.pt
seed: 0
threads: 2
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 16, test_batch_size: 64, resize: 32, channels: 3,
       train_limit: 256, test_limit: 128, normalize: {mean: [0.286, 0.286, 0.286], std: [0.353, 0.353, 0.353]}}
pretrain: {steps: 16, optimizer: {name: adam, lr: 0.001}}
compress:
  - plugin: ptq
    calibration: {batches: 4}
    config_list:
      - preset: int8_onednn
export: {dir: out, int8: true, int8_only_if_faster: false}
YAML

echo "== 1. zoo_small, post-training int8 with the preset"
"$shrink" run "$work/ptq.yaml" --print-plan > "$work/plan.txt"
grep -q "dense2.cat._output_0 int8 affine default: the output of int8 aten::cat (dense2)" "$work/plan.txt" \
  || fail "the plan does not say why a site is there"
grep -q "preset int8_onednn: 8 convolutions and linears and 11 other ops int8, 28 sites" "$work/plan.txt" \
  || fail "the plan's preset summary"
grep -q "preset int8_onednn: aten::linear (fc) stays float: 640 weights" "$work/plan.txt" \
  || fail "the plan does not say why fc stays float"
grep -q "dense1.cat._output_0 uses the range of se.mul._output_0" "$work/plan.txt" \
  || fail "the plan does not say which sites share a cat's range"
printf -- "- preset: int8_onednn\n" > "$work/preset.yaml"
"$shrink" inspect "$model_dir/zoo_small.pt" --config-list "$work/preset.yaml" > "$work/inspect.txt"
grep -q "^se.mul._output_0: the output of int8 aten::mul (se)$" "$work/inspect.txt" \
  || fail "inspect does not say why a site is there"
grep -q "^33 ops, 28 sites from" "$work/inspect.txt" || fail "inspect's site count"
"$shrink" inspect "$model_dir/zoo_small.pt" --config-list "$work/preset.yaml" --json \
  | /usr/bin/python3 -c '
import json, sys
ops = {o["name"]: o for o in json.load(sys.stdin)}
assert ops["se.mul"]["why"] == ["_output_0: the output of int8 aten::mul (se)"], ops["se.mul"]
assert ops["fc"]["sites"] == [] and ops["fc"]["why"] == [], ops["fc"]' || fail "inspect --json reasons"

"$shrink" run "$work/ptq.yaml" --out "$work/ptq" > "$work/ptq.log"
grep -q "compress: ptq on 21 sites (7 more quantizing with their cat's one range)" "$work/ptq.log" \
  || fail "the stage line: $(grep 'compress:' "$work/ptq.log")"
/usr/bin/python3 - "$work/ptq" <<'PY'
import json, sys, torch
out = sys.argv[1]
i8 = json.load(open(out + "/report.json"))["int8"]
print({k: i8[k] for k in ("quantized_ops", "sqnr_db_vs_fake_quant", "size_ratio")})
# 7 convolutions, 11 others (2 SiLU, 2 mul, 4 cat, 2 BatchNorm, 1 add), sigmoid and hardsigmoid.
assert i8["quantized_ops"] == 20 + 1, i8["int8_ops"]
assert len(i8["float_ops"]) == 1 and "aten::linear (fc): runs in float" in i8["float_ops"][0], i8
assert i8["sqnr_db_vs_fake_quant"] > 25, i8
assert i8["written"] and len(i8["regions"]) == 1, i8
torch.backends.quantized.engine = "onednn"
int8 = torch.jit.load(out + "/model_int8.pt").eval()
fq = torch.jit.load(out + "/model_qat.pt").eval()
kinds = [n.kind() for n in int8.inlined_graph.nodes()]
for k in ("quantized::batch_norm_relu", "quantized::mul", "quantized::cat", "quantized::add_relu",
          "aten::chunk", "aten::sigmoid", "aten::hardsigmoid", "aten::mean"):
    assert k in kinds, (k, sorted(set(kinds)))
assert "aten::batch_norm" not in kinds and "aten::silu" not in kinds, sorted(set(kinds))
# One dequantize: the classifier's input.
assert kinds.count("aten::dequantize") == 1, kinds.count("aten::dequantize")
torch.manual_seed(0)
x = torch.randn(8, 3, 32, 32)
with torch.no_grad():
    a, b = int8(x), fq(x)
sqnr = 10 * torch.log10(b.pow(2).sum() / (a - b).pow(2).sum().clamp_min(1e-30))
print("python: outputs SQNR vs fake-quant", float(sqnr), "dB")
assert sqnr > 20, float(sqnr)
PY

echo "== 2. QAT with the preset, BatchNorm folded in training"
"$shrink" run "$work/ptq.yaml" --out "$work/qat" \
  --set 'compress=[{plugin: qat, fold_bn: true, config_list: [{preset: int8_onednn}]}]' \
  --set 'finetune={steps: 8, optimizer: {name: sgd, lr: 0.01}}' > "$work/qat.log"
grep -Eq "^compress: qat on 21 sites .*, 4 BatchNorms folded" "$work/qat.log" \
  || fail "qat stage line: $(grep 'compress:' "$work/qat.log")"
/usr/bin/python3 - "$work/qat" <<'PY'
import json, sys
i8 = json.load(open(sys.argv[1] + "/report.json"))["int8"]
assert i8["quantized_ops"] == 21 and i8["sqnr_db_vs_fake_quant"] > 25, i8
PY

echo "== 3. resnet18: the preset finds what the hand-written config_list gives"
"$shrink" run "$work/ptq.yaml" --out "$work/resnet18" --set "model=$model_dir/resnet18.pt" > "$work/resnet18.log"
/usr/bin/python3 - "$work/resnet18" <<'PY'
import json, sys
i8 = json.load(open(sys.argv[1] + "/report.json"))["int8"]
assert i8["quantized_ops"] == 28 and i8["sqnr_db_vs_fake_quant"] > 20, i8
assert sum(op.startswith("aten::add_ (") for op in i8["int8_ops"]) == 8, i8["int8_ops"]
PY

echo "== 4. a hand-written entry wins; bad input"
"$shrink" run "$work/ptq.yaml" --print-plan \
  --set 'compress.0.config_list=[{preset: int8_onednn}, {op_names: [stem], target_names: [weight], quant_scheme: affine}]' \
  > "$work/hand.txt"
grep -q "^ *stem.weight int8 affine default$" "$work/hand.txt" || fail "the hand-written stem.weight"
grep -q "^ *stem_bn._output_0 int8 affine default: the output of int8" "$work/hand.txt" || fail "the preset's others"

expect_error() {  # NAME EXPECTED ARGS...
  local name=$1 expected=$2
  shift 2
  if "$shrink" --log-level warn run "$@" > "$work/$name.out" 2> "$work/$name.err"; then
    fail "$name: no error"
  fi
  [ "$(wc -l < "$work/$name.err")" -eq 1 ] || fail "$name: not one line: $(cat "$work/$name.err")"
  grep -qF "$expected" "$work/$name.err" || fail "$name: $(cat "$work/$name.err")"
  [ ! -e "$work/$name" ] || fail "$name: wrote results"
}
expect_error unknown "preset: expected one of int8_onednn" "$work/ptq.yaml" --out "$work/unknown" \
  --set 'compress.0.config_list=[{preset: int4_magic}]'
expect_error beside "op_names beside preset: int8_onednn places its own sites" "$work/ptq.yaml" \
  --out "$work/beside" --set 'compress.0.config_list=[{preset: int8_onednn, op_names: [stem]}]'
# TorchScript reads a module's source: from a file, not standard input.
cat > "$work/pool.py" <<'PY'
import sys, torch
class Pool(torch.nn.Module):
    def forward(self, x):
        return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 2), 1)[:, :10]
torch.jit.script(Pool()).save(sys.argv[1])
PY
/usr/bin/python3 "$work/pool.py" "$work/pool.pt"
expect_error no_int8_op "has no convolution or linear module that int8 kernels can run" "$work/ptq.yaml" \
  --out "$work/no_int8_op" --set "model=$work/pool.pt" --set 'pretrain={steps: 0}'

echo "== 5. only where it pays"
"$shrink" run "$work/ptq.yaml" --out "$work/pays" --set export.int8_only_if_faster=true > "$work/pays.log"
/usr/bin/python3 - "$work/pays" <<'PY'
import json, os, sys
out = sys.argv[1]
i8 = json.load(open(out + "/report.json"))["int8"]
print("int8 speed-up over the best fp32:", i8["speedup"], "written:", i8["written"])
assert i8["speedup"] > 0 and i8["written"] == (i8["speedup"] >= 0.97), i8
assert os.path.exists(out + "/model_int8.pt") == i8["written"], i8
assert i8["isa"], i8  # the instruction set the timing ran on
PY
if grep -q "^model_int8.pt not written: int8 ran at" "$work/pays.log"; then
  grep -q "export.int8_only_if_faster: false writes it anyway" "$work/pays.log" || fail "the line"
  if grep -q "oneDNN AVX512_CORE_AMX)" "$work/pays.log"; then
    grep -q "with ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI set for shrink and where the model runs" \
      "$work/pays.log" || fail "no word of AMX on a model int8 did not pay for"
  fi
fi
echo "int8 preset: all good"
