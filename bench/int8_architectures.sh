#!/usr/bin/env bash
# Post-training int8 on real architectures nobody wrote for this project: torchvision's resnet18,
# mobilenet_v2, mobilenet_v3_large, efficientnet_b0, densenet121, regnet_x_400mf, resnext50_32x4d
# and shufflenet_v2_x1_0 (random weights, seed 0, 10 classes, BatchNorm statistics from noise at
# the input size, so that activations neither vanish nor explode), at 3x32x32 and 3x224x224 inputs
# made from Fashion-MNIST. Shrink quantizes each with the int8_onednn placement preset (no
# hand-written config_list), calibrated on 64 samples, and exports it to int8; torch.ao's FX
# post-training int8 of the same weights is calibrated on 64 samples of the same data. Each model
# is calibrated at the input size it is then timed at (two Shrink runs per model for --size both):
# activation ranges, and so the int8 scales, depend on the resolution.
#
# Per architecture and size, bench/int8_latency.py times, side by side on one thread at batch 1
# and 8: the best fp32 (as loaded, or frozen + optimize_for_inference, whichever is faster),
# Shrink's int8 and torch.ao's int8. Shrink writes no model_int8.pt where int8 is slower than the
# best fp32 at batch 1 or 16 (export.int8_only_if_faster): the table says "kept fp32" and times
# the int8 model `shrink export --int8` lowers from model_qat.pt regardless, for the comparison.
# The script prints what became int8 and what stayed float, and ends with a markdown table. A
# model Shrink cannot export shows Shrink's error line; one torch.ao cannot convert, torch.ao's.
#
#   bench/int8_architectures.sh [--size 32|224|both] [NAME ...]     # needs a built tree; all 8
#                                                                   # at both sizes: ~15 minutes
set -uo pipefail
cd "$(dirname "$0")/.."
sizes=(32 224)
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --size)
      case "${2:-}" in
        32|224) sizes=("$2") ;;
        both) sizes=(32 224) ;;
        *) echo "int8_architectures.sh: --size takes 32, 224 or both" >&2; exit 2 ;;
      esac
      shift 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(resnet18 mobilenet_v2 mobilenet_v3_large efficientnet_b0 densenet121
                                 regnet_x_400mf resnext50_32x4d shufflenet_v2_x1_0)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The experiment for one model at one input size: 4 calibration batches of 16 (64 samples).
write_yaml() {  # NAME SIZE
  cat > "$out/$1.$2.yaml" <<YAML
model: $out/$1.$2.pt
seed: 0
threads: 2
data: {path: /usr/share/datasets/fashion-mnist, batch_size: 16, test_batch_size: 64, resize: $2, channels: 3,
       train_limit: 256, test_limit: 64, normalize: {mean: [0.286, 0.286, 0.286], std: [0.353, 0.353, 0.353]}}
compress:
  - plugin: ptq
    calibration: {batches: 4}
    config_list:
      - preset: int8_onednn
evaluate: false
export: {dir: $out/$1.$2.out, int8: true, latency: false}
YAML
}

# Shrink's run, then the three-way timing; leaves $out/NAME.SIZE.json (and .error when Shrink
# failed, in which case fp32 and torch.ao are still timed).
bench_one() {  # NAME SIZE
  local run="$out/$1.$2" int8=()
  write_yaml "$1" "$2"
  if build/bin/shrink run "$run.yaml" > "$run.log" 2>&1; then
    grep -E "^model_int8|^  (float|note)|^int8 region" "$run.log" | sort | uniq -c | sort -rn | head -12
    if [ ! -f "$run.out/model_int8.pt" ]; then  # slower than the best fp32: lowered for timing
      build/bin/shrink export "$run.out/model_qat.pt" --int8 -o "$run.out/model_int8_all.pt" > /dev/null
      int8=(--int8 "$run.out/model_int8_all.pt")
    else
      int8=(--int8 "$run.out/model_int8.pt")
    fi
  else
    grep -m1 'error' "$run.log" > "$run.error" || tail -1 "$run.log" > "$run.error"
    echo "shrink: $(cat "$run.error")"
  fi
  # The allocator settings shrink sets for itself (mallopt in tools/shrink/main.cpp), so that
  # Python's process keeps freed memory as Shrink's would.
  MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 OPENBLAS_NUM_THREADS=1 \
    /usr/bin/python3 bench/int8_latency.py --fp32 "$out/$1.$2.pt" "${int8[@]}" --name "$1" --size "$2" \
    --batch 1,8 --calibration 64 --calibration-batch 16 --threads 1 > "$run.json" 2> "$run.stderr" \
    || { echo "int8_latency.py: $(tail -1 "$run.stderr")"; rm -f "$run.json"; return; }
  cat "$run.json"
}

for name in "${names[@]}"; do
  echo "== $name"
  for size in "${sizes[@]}"; do
    echo "-- $name at 3x${size}x${size}"
    /usr/bin/python3 tools/models/make_model.py "$name" "$out/$name.$size.pt" --bn-stats "$size" \
      || { touch "$out/$name.failed"; continue 2; }
    bench_one "$name" "$size"
  done
done

# The table: one row per architecture and size. Missing figures (a failed export or conversion)
# show as "-", and the errors are listed under the table.
echo
/usr/bin/python3 - "$out" "${sizes[*]}" "${names[@]}" <<'PY'
import json, os, sys
out, sizes, names = sys.argv[1], sys.argv[2].split(), sys.argv[3:]

def load(path):
    return json.load(open(path)) if os.path.exists(path) else None

def both(rows, cell):
    """`cell` of the batch-1 and batch-8 rows, "b1 / b8"; "-" where a figure is missing."""
    return " / ".join(cell(x) if x else "-" for x in rows)

def num(key, fmt):
    return lambda x: fmt.format(x[key]) if key in x else "-"

def shrink_cells(r):
    """Written or not, int8 ops, float ops, file ratio and SQNR from report.json's int8 section."""
    if not r:
        return ["-"] * 5
    if not r.get("written", True):
        return [f"kept fp32 ({r['speedup']:.2f}x)", str(r["quantized_ops"])] + ["-"] * 3
    sqnr = r.get("sqnr_db_vs_fake_quant")
    return ["yes", str(r["quantized_ops"]), str(len(r["float_ops"])), f"{r['size_ratio']:.2f}x",
            "inf" if sqnr is None else f"{sqnr:.1f}"]

def errors_of(name, size, run, timing):
    found = []
    if os.path.exists(f"{run}.error"):
        found.append(f"{name} {size}: shrink: {open(run + '.error').read().strip()}")
    if not timing:
        found.append(f"{name} {size}: no timing (int8_latency.py failed)")
    elif "torch_ao_error" in timing:
        found.append(f"{name} {size}: torch.ao: {timing['torch_ao_error']}")
    return found

isa = next((json.load(open(f"{out}/{n}.{z}.out/report.json")).get("int8", {}).get("isa")
            for n in names for z in sizes if os.path.exists(f"{out}/{n}.{z}.out/report.json")), None)
print(f"oneDNN instruction set: {isa or 'unknown'} (ONEDNN_MAX_CPU_ISA caps it, for both tools)")
print()
print("| model | input | model_int8.pt | int8 ops | float ops | file | SQNR dB | best fp32 ms b1 / b8 "
      "| Shrink int8 ms b1 / b8 | torch.ao int8 ms b1 / b8 | Shrink speed-up b1 / b8 | Shrink / torch.ao b1 / b8 |")
print("|" + "---|" * 12)
errors = []
for name in names:
    if os.path.exists(f"{out}/{name}.failed"):
        errors.append(f"{name}: make_model.py could not build it")
        continue
    for size in sizes:
        run = f"{out}/{name}.{size}"
        report, timing = load(f"{run}.out/report.json"), load(f"{run}.json")
        by_batch = {x["batch"]: x for x in timing["results"]} if timing else {}
        rows = [by_batch.get(1), by_batch.get(8)]
        cells = [name, size] + shrink_cells((report or {}).get("int8")) + [
            both(rows, lambda x: f"{x['best_fp32_ms']:.2f} ({x['best_fp32']})"),
            both(rows, num("shrink_int8_ms", "{:.2f}")), both(rows, num("torch_ao_int8_ms", "{:.2f}")),
            both(rows, num("shrink_int8_speedup", "{:.2f}x")), both(rows, num("shrink_vs_torch_ao", "{:.2f}x"))]
        print("| " + " | ".join(cells) + " |")
        errors += errors_of(name, size, run, timing)
if errors:
    print()
    print("\n".join(errors))
PY
