#!/usr/bin/env bash
# The low-bit quantizers' accuracy table (issue 5) on Fashion-MNIST with the seed's Mnist net:
# each network trains in fp32 once (the quick start's pretraining: 5 epochs, SGD lr 0.01, momentum
# 0.9, weight decay 5e-4, seed 0) and is saved as model_fp32.pt; every row then starts from that
# same fp32 model and fine-tunes with its quantizer for the same number of epochs, and reports test
# accuracy, the size of its weights at its bit width, and wall time. The table replaces the section
# between `<!-- accuracy-table:begin -->` and `<!-- accuracy-table:end -->` in docs/results.md.
#
#   bench/accuracy_table.sh                     # 3 fine-tune epochs a row (~10 minutes on 2 cores)
#   bench/accuracy_table.sh --epochs 5          # 5 fine-tune epochs a row
#   bench/accuracy_table.sh --quick             # 1 + 1 epochs on 12800 / 2000 samples: a smoke run
#   bench/accuracy_table.sh --rows qat-w8a8,lsq-w4a4   # only these rows (and their fp32 training)
#   bench/accuracy_table.sh --fp32-finetune     # also an fp32 row fine-tuned as long, as a control
#   bench/accuracy_table.sh --results FILE      # write the section into FILE instead
#
# Rows: fp32, qat-w8a8, lsq-w8a8, lsq-w4a4, lsq-w3a3, lsq-w2a2, dorefa-w8, dorefa-w4, dorefa-w2,
# bnn-w1a1 (on mnist_hardtanh, with an fp32 training of its own), and fp32-ft (--fp32-finetune).
# A --quick or --rows run prints the table and writes it only where --results says, so that a
# smoke run never replaces the measured table. A row that fails is reported as failed and the
# others still run; the script then exits 1. Needs a built tree (build/bin/shrink, build/models).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
command_line="bench/accuracy_table.sh${*:+ $*}"

data=/usr/share/datasets/fashion-mnist
threads=2  # as the quick start: the table's wall times compare with its epoch times
pre_epochs=5
epochs=3
epochs_given=0
quick=0
fp32_finetune=0
only=""
results=""
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "--epochs: expected a positive integer" >&2; exit 2; }
      epochs=$2; epochs_given=1; shift 2 ;;
    --quick) quick=1; shift ;;
    --fp32-finetune) fp32_finetune=1; shift ;;
    --rows) only=${2:?--rows: expected a comma-separated list}; shift 2 ;;
    --results) results=${2:?--results: expected a file}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "accuracy_table.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
limits=""
if [ "$quick" = 1 ]; then
  pre_epochs=1
  [ "$epochs_given" = 1 ] || epochs=1
  limits=$'  train_limit: 12800\n  test_limit: 2000'
fi
if [ -z "$results" ] && [ "$quick" = 0 ] && [ -z "$only" ]; then results=docs/results.md; fi

# id -> "plugin network weight_bits activation_bits"; the order is the table's.
all_rows=(fp32 fp32-ft qat-w8a8 lsq-w8a8 lsq-w4a4 lsq-w3a3 lsq-w2a2 dorefa-w8 dorefa-w4 dorefa-w2 bnn-w1a1)
declare -A spec=(
  [fp32]="- mnist 32 32"
  [fp32-ft]="- mnist 32 32"
  [qat-w8a8]="qat mnist 8 8"
  [lsq-w8a8]="lsq mnist 8 8"
  [lsq-w4a4]="lsq mnist 4 4"
  [lsq-w3a3]="lsq mnist 3 3"
  [lsq-w2a2]="lsq mnist 2 2"
  [dorefa-w8]="dorefa mnist 8 8"
  [dorefa-w4]="dorefa mnist 4 8"
  [dorefa-w2]="dorefa mnist 2 8"
  [bnn-w1a1]="bnn mnist_hardtanh 1 1"
)
rows=()
if [ -n "$only" ]; then
  IFS=, read -ra rows <<< "$only"
  for r in "${rows[@]}"; do
    [ -n "${spec[$r]+x}" ] || { echo "--rows: unknown row '$r' (known: ${all_rows[*]})" >&2; exit 2; }
  done
else
  for r in "${all_rows[@]}"; do
    [ "$r" != fp32-ft ] || [ "$fp32_finetune" = 1 ] || continue
    rows+=("$r")
  done
fi
[ -x build/bin/shrink ] || { echo "build/bin/shrink: not built (scripts/quickstart.sh builds it)" >&2; exit 1; }
[ -d "$data" ] || { echo "$data: Fashion-MNIST is missing" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
table="$out/rows.tsv"  # one line a run: id, report, seconds, status, last error line
: > "$table"

# The experiment's common part: the model, the quick start's data, and no pretraining (rows
# start from a trained model_fp32.pt).
header() {  # model export_dir export_model
  cat <<EOF
model: $1
seed: 0
threads: $threads
data:
  format: idx
  path: $data
  batch_size: 64
  test_batch_size: 1000
  normalize: {mean: [0.2860], std: [0.3530]}
${limits}
evaluate: true
export: {dir: $2, model: $3}
EOF
}

sgd="{name: sgd, lr: 0.01, momentum: 0.9, weight_decay: 5.0e-4}"  # the quick start's
adam="{name: adam, lr: 0.001, weight_decay: 0.0}"  # BNNs: latent weights without decay

# The row's compress stage and fine-tuning.
stage() {  # id
  local plugin network w a
  read -r plugin network w a <<< "${spec[$1]}"
  case "$plugin" in
    -) ;;  # fp32-ft: no compression
    qat)  # the quick start's config_list, as is
      cat <<EOF
compress:
  - plugin: qat
    config_list:
      - op_names: [conv1, conv2, fc1, fc2]
        target_names: [_input_, weight, _output_]
        quant_dtype: int8
        quant_scheme: affine
        granularity: default
      - op_names: [relu1, relu2, relu3]
        target_names: [_output_]
        quant_dtype: int8
        quant_scheme: affine
        granularity: default
EOF
      ;;
    lsq|dorefa)  # weights signed, the activations (after ReLU6) unsigned
      # dorefa keeps each layer's weight range (weight_scale: max_abs): the paper's [-1, 1]
      # weights need a BatchNorm after every layer, which this net lacks (it diverges without).
      cat <<EOF
compress:
  - plugin: $plugin
$([ "$plugin" = dorefa ] && echo "    options: {weight_scale: max_abs}")
    config_list:
      - op_names: [conv1, conv2, fc1, fc2]
        target_names: [weight]
        quant_dtype: int$w
      - op_names: [relu1, relu2, relu3]
        target_names: [_output_]
        quant_dtype: uint$a
EOF
      ;;
    bnn)  # first and last layers' weights stay float, as is usual for BNNs
      cat <<EOF
compress:
  - plugin: bnn
    config_list:
      - op_names: [conv2, fc1]
        target_names: [weight]
        quant_bits: 1
      - op_names: [relu1, relu2, relu3]
        target_names: [_output_]
        quant_bits: 1
EOF
      ;;
  esac
  cat <<EOF
finetune:
  epochs: $epochs
  optimizer: $([ "$plugin" = bnn ] && echo "$adam" || echo "$sgd")
EOF
}

# Runs one experiment, timed; appends its line to the table. Returns shrink's status.
run() {  # id yaml dir
  local id=$1 yaml=$2 dir=$3 t0 t1 status=ok
  echo "== $id: shrink run $yaml"
  t0=$(date +%s.%N)
  if ! build/bin/shrink run "$yaml" --out "$dir" 2> "$dir.err" | tee "$dir.log"; then status=failed; fi
  t1=$(date +%s.%N)
  local error=""
  if [ "$status" = failed ]; then
    tail -n 5 "$dir.err" >&2
    error=$(grep -v '^[[:space:]]*$' "$dir.err" | tail -n 1 | tr '\t' ' ')
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$id" "$dir/report.json" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$status" "$error" >> "$table"
  [ "$status" = ok ]
}

# One fp32 training per network the rows use; its model_fp32.pt is every row's `model:`.
declare -A fp32_model=()
for r in "${rows[@]}"; do
  read -r _ network _ _ <<< "${spec[$r]}"
  [ -z "${fp32_model[$network]+x}" ] || continue
  model="$root/build/models/$network.pt"
  if [ ! -f "$model" ]; then  # a tree built before the model was added
    echo "build/models/$network.pt: missing; scripting it with tools/models/make_model.py"
    model="$out/$network.pt"
    /usr/bin/python3 tools/models/make_model.py "$network" "$model"
  fi
  dir="$out/fp32-$network"
  { header "$model" "$dir" true
    printf 'pretrain:\n  epochs: %s\n  optimizer: %s\n' "$pre_epochs" "$sgd"; } > "$dir.yaml"
  run "fp32-$network" "$dir.yaml" "$dir" || { echo "fp32 training of $network failed" >&2; exit 1; }
  [ -f "$dir/model_fp32.pt" ] || {
    echo "$dir: no model_fp32.pt; build/bin/shrink predates it (rebuild)" >&2; exit 1; }
  fp32_model[$network]="$dir/model_fp32.pt"
done

failed=0
for r in "${rows[@]}"; do
  [ "$r" != fp32 ] || continue  # the fp32 training above is its row
  read -r _ network _ _ <<< "${spec[$r]}"
  dir="$out/$r"
  # export.model off: the rows report Shrink's own accuracy of the fine-tuned fake-quant model
  # (report.json's sites are there all the same), and no plugin needs ATen's fake-quant export.
  { header "${fp32_model[$network]}" "$dir" false; stage "$r"; } > "$dir.yaml"
  run "$r" "$dir.yaml" "$dir" || failed=1
done

if [ -n "$results" ] && [ ! -f "$results" ]; then
  mkdir -p "$(dirname "$results")"
  cat > "$results" <<'EOF'
# Results

Measured results of Shrink's benchmarks on the machines named with them. Each section is written
by the script that measures it, between its markers; run the script again to refresh it.

## Low-bit quantizers on Fashion-MNIST (issue 5)

<!-- accuracy-table:begin -->
<!-- accuracy-table:end -->
EOF
fi

nproc_n=$(nproc)
cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
version=$(build/bin/shrink --version 2> /dev/null || echo "shrink ?")
commit=$(git describe --always --dirty 2> /dev/null || echo "?")
/usr/bin/python3 - "$table" "$results" "$command_line" "$nproc_n" "${cpu:-unknown}" "$version" \
  "$commit" "$threads" "$pre_epochs" "$epochs" "$quick" "${rows[*]}" <<'PY'
import datetime, json, os, sys

import torch

(table, results, command, nproc, cpu, version, commit, threads, pre_epochs, epochs, quick,
 selected) = sys.argv[1:13]
quick = quick == "1"
selected = selected.split()

runs = {}
for line in open(table):
    rid, report, seconds, status, error = line.rstrip("\n").split("\t")
    runs[rid] = {"report": report, "seconds": float(seconds), "status": status, "error": error}

SPEC = {
    "fp32": ("fp32", "mnist", None, 32, 32),
    "fp32-ft": (f"fp32, fine-tuned {epochs} more epochs", "mnist", None, 32, 32),
    "qat-w8a8": ("QAT W8A8", "mnist", "qat", 8, 8),
    "lsq-w8a8": ("LSQ W8A8", "mnist", "lsq", 8, 8),
    "lsq-w4a4": ("LSQ W4A4", "mnist", "lsq", 4, 4),
    "lsq-w3a3": ("LSQ W3A3", "mnist", "lsq", 3, 3),
    "lsq-w2a2": ("LSQ W2A2", "mnist", "lsq", 2, 2),
    "dorefa-w8": ("DoReFa W8A8", "mnist", "dorefa", 8, 8),
    "dorefa-w4": ("DoReFa W4A8", "mnist", "dorefa", 4, 8),
    "dorefa-w2": ("DoReFa W2A8", "mnist", "dorefa", 2, 8),
    "bnn-w1a1": ("BNN W1A1", "mnist_hardtanh", "bnn", 1, 1),
}
# The weights each row quantizes, with their bits: used only where report.json has no site for
# one (a plugin without export), and then marked.
ALL = ("conv1", "conv2", "fc1", "fc2")
NOMINAL = {rid: ({op: s[3] for op in (("conv2", "fc1") if s[2] == "bnn" else ALL)} if s[2] else {})
           for rid, s in SPEC.items()}
# Targets: (text, test(accuracy, fp32 accuracy)).
TARGETS = {
    "lsq-w4a4": ("within 1.0 point of fp32", lambda a, f: a >= f - 0.010),
    "lsq-w2a2": ("within 3 points of fp32", lambda a, f: a >= f - 0.030),
    "bnn-w1a1": (">= 0.85", lambda a, f: a >= 0.85),
}


def load(rid):
    run = runs.get(rid)
    if run is None or run["status"] != "ok":
        return None
    with open(run["report"]) as f:
        return json.load(f)


# The fp32 model of each network: its accuracy, and its parameters for the sizes.
fp32 = {}
for network in ("mnist", "mnist_hardtanh"):
    rid = f"fp32-{network}"
    report = load(rid)
    if report is None:
        continue
    model = torch.jit.load(os.path.join(os.path.dirname(runs[rid]["report"]), "model_fp32.pt"))
    fp32[network] = {
        "accuracy": report["metrics"]["baseline_accuracy"],
        "params": {n: p.numel() for n, p in model.named_parameters()},
        "report": report,
        "run": runs[rid],
    }


def kib(nbytes):
    return nbytes / 1024.0


def weight_bytes(network, sites, nominal):
    """Bytes of the weights at the row's bit widths: quantized weight sites at their bits,
    every other parameter float32. Returns (bytes, fp32 bytes, estimated from the nominal)."""
    params = fp32[network]["params"]
    bits = {name: 32 for name in params}
    seen = set()
    for s in sites:
        name = f"{s['op']}.{s['target']}"
        if s["target"] in ("weight", "bias") and name in params and s.get("quant_bits"):
            bits[name] = int(s["quant_bits"])
            seen.add(s["op"])
    guessed = False
    for op, b in nominal.items():
        if op not in seen and f"{op}.weight" in params:
            bits[f"{op}.weight"] = b
            guessed = True
    total = sum(params[n] * bits[n] / 8.0 for n in params)
    return total, sum(params.values()) * 4.0, guessed


lines = []
notes = []
head = ("| row | network | plugin | bits W/A | test accuracy | vs fp32 (points) | "
        "weights KiB (fp32 KiB) | wall s | s / epoch | target | met |")
lines.append(head)
lines.append("| " + " | ".join(["---"] * 11) + " |")
order = ["fp32"] + [r for r in SPEC if r != "fp32"]
if "bnn-w1a1" in selected:
    order.insert(order.index("bnn-w1a1"), "fp32-hardtanh")
for rid in order:
    if rid == "fp32-hardtanh":
        label, network, plugin, w, a = "fp32 (Hardtanh)", "mnist_hardtanh", None, 32, 32
    elif rid in selected or (rid == "fp32" and "mnist" in fp32):
        label, network, plugin, w, a = SPEC[rid]
    else:
        continue
    is_fp32_run = rid in ("fp32", "fp32-hardtanh")
    run = runs.get(f"fp32-{network}" if is_fp32_run else rid)
    target, test = TARGETS.get(rid, ("-", None))
    cells = [label, f"`{network}`", f"`{plugin}`" if plugin else "-", f"{w}/{a}"]
    if network not in fp32 or run is None or run["status"] != "ok":
        why = (run["error"] or "see its log") if run else "not run"
        cells += ["failed", "-", "-", f"{run['seconds']:.1f}" if run else "-", "-", target,
                  "missed" if test else "-"]
        notes.append(f"{label}: failed: {why}")
        lines.append("| " + " | ".join(cells) + " |")
        continue
    ref = fp32[network]["accuracy"]
    if is_fp32_run:
        report = fp32[network]["report"]
        accuracy = report["metrics"]["baseline_accuracy"]
        spe = report["train"]["baseline_seconds_per_epoch"]
        nominal, sites = {}, []
    else:
        report = load(rid)
        accuracy = report["metrics"]["compressed_accuracy"]
        spe = report["train"]["compressed_seconds_per_epoch"]
        nominal, sites = NOMINAL[rid], report.get("sites") or []
        if abs(report["metrics"]["baseline_accuracy"] - ref) > 1e-6:
            notes.append(f"{label}: its start scored {report['metrics']['baseline_accuracy']:.4f}, "
                         f"not the fp32 training's {ref:.4f}")
    size, size32, guessed = weight_bytes(network, sites, nominal)
    if guessed:
        notes.append(f"{label}: report.json has no weight sites (the plugin does not export); "
                     "its size assumes the configured bits")
    met = "-" if test is None else ("met" if test(accuracy, ref) else "missed")
    cells += [f"{accuracy:.4f}", "-" if is_fp32_run else f"{100 * (accuracy - ref):+.2f}",
              f"{kib(size):.1f} ({kib(size32):.1f})", f"{run['seconds']:.1f}", f"{spe:.2f}",
              target, met]
    lines.append("| " + " | ".join(cells) + " |")

def n_epochs(n):
    return f"{n} epoch" + ("" if n == "1" else "s")


now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
data = "12800 training / 2000 test samples (--quick)" if quick else "60000 training / 10000 test samples"
section = [
    f"Measured {now} with `{command}` ({version}, commit {commit}) on {nproc} cores "
    f"({cpu}), {threads} threads.",
    "",
]
if quick:
    section += [f"**A --quick smoke run: {pre_epochs} + {n_epochs(epochs)} on a subset; the "
                "figures are not the table's.**", ""]
section += lines + [
    "",
    f"- Fashion-MNIST, {data}, normalized as the quick start. Each network trains in fp32 "
    f"once ({n_epochs(pre_epochs)}, SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 64, seed 0; "
    "`shrink run` with no `compress` stage saves it as `model_fp32.pt`), and every row starts "
    f"from that same model and fine-tunes {n_epochs(epochs)}: SGD as the pretraining, except BNN "
    "(Adam lr 0.001, no weight decay). Quantizer parameters (LSQ's step sizes) are in the same "
    "optimizer.",
    "- fp32 rows: the pretrained model itself, no fine-tuning; wall s is the pretraining run"
    + ("; `fp32, fine-tuned` trains it as many epochs as the rows without compression, a "
       "control for what the extra epochs alone give." if "fp32-ft" in selected else
       ". No fp32 row is fine-tuned as long as the compressed rows (`--fp32-finetune` adds one)."),
    "- Quantized sites. QAT W8A8: the quick start's `config_list` (conv1, conv2, fc1, fc2: "
    "`_input_`, `weight`, `_output_`; relu1..relu3: `_output_`; int8 affine). LSQ and DoReFa: "
    "the weights of conv1, conv2, fc1 and fc2 (int-k) and the outputs of relu1, relu2 and relu3 "
    "(uint-k; 8 bits for every DoReFa row, which clips them to [0, 1] where the net's ReLU6 "
    "reaches 6); the layers' inputs and the other outputs stay float. DoReFa runs with "
    "`weight_scale: max_abs` (its k-bit weights times the layer's max|w|): the paper's weights in "
    "[-1, 1] need a BatchNorm after every layer, and on this net they diverge (loss 13, accuracy "
    "0.10 after one epoch in `tests/cli/lowbit_cli_test.sh`'s setting). "
    "BNN W1A1 (`mnist_hardtanh`, the same net with Hardtanh activations, its own fp32 training): "
    "the weights of conv2 and fc1 and the outputs of relu1..relu3 to +1/-1; the first and last "
    "layers' (conv1, fc2) weights stay full precision, as is usual for BNNs.",
    "- Test accuracy: Shrink's top-1 of the fine-tuned model with its quantizers (fake-quant), "
    "`metrics.compressed_accuracy`; vs fp32 is against the fp32 row of the same network.",
    "- Weights KiB: every weight site of `report.json` at its `quant_bits` (numel x bits / 8), "
    "every other parameter (biases, BatchNorm) as float32; quantization scales and BatchNorm "
    "running statistics are not counted. In brackets, all parameters as float32.",
    "- Wall s: the whole `shrink run` (loading the data, evaluating, fine-tuning); s / epoch: "
    "one training epoch.",
]
section += [f"- {n}".replace("|", "\\|") for n in notes]
text = "\n".join(section).strip("\n") + "\n"
print()
print(text)
if results:
    begin, end = "<!-- accuracy-table:begin -->", "<!-- accuracy-table:end -->"
    with open(results) as f:
        doc = f.read()
    if begin in doc and end in doc and doc.index(begin) < doc.index(end):
        doc = doc[: doc.index(begin) + len(begin)] + "\n" + text + doc[doc.index(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n## Low-bit quantizers on Fashion-MNIST (issue 5)\n\n" + \
            begin + "\n" + text + end + "\n"
    tmp = results + ".tmp"
    with open(tmp, "w") as f:
        f.write(doc)
    os.replace(tmp, results)
    print(f"written to {results}")
PY
exit "$failed"
