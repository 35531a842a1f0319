#!/usr/bin/env bash
# Data-parallel runs on two processes on 127.0.0.1 (issue 18), on real Fashion-MNIST:
#  - 2 ranks of batch 32 train as 1 rank of batch 64, step by step: parameters within 1e-5 after
#    20 steps, in fp32 and in QAT (EMA ranges combined across ranks); a taylor pruning stage
#    masks the same filters;
#  - ptq calibrated on 2 ranks writes the calibration.json of 1 rank over the same samples, for
#    every range estimator;
#  - a rank killed mid-epoch ends the other within the timeout, naming it; the checkpoint of the
#    last whole epoch resumes to the results of an uninterrupted run; a frozen rank is found too,
#    and --nproc leaves no process behind;
#  - the quick start on --nproc 2 writes the files of a single-process run;
#  - what a user gets wrong, in one line each.
# Usage: distributed_cli_test.sh SHRINK_EXE MODEL_DIR SOURCE_DIR TEST_PLUGIN_DIR
set -euo pipefail
shrink=$1
model_dir=$2
src=$3
test_plugins=$4
work=$(mktemp -d)
trap 'pkill -KILL -f -- "--out $work/" 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
py=/usr/bin/python3

# The quick start's net (a BatchNorm, so synchronized), 1280 samples: 20 steps of 64 an epoch.
# A small learning rate without momentum: the 1e-5 is then about the ranks, not about fp32
# rounding grown by a steep descent (1 vs 2 threads in one process differ as much otherwise).
cat > "$work/exp.yaml" <<YAML
model: $model_dir/mnist.pt
seed: 3
threads: 1
data:
  format: idx
  path: /usr/share/datasets/fashion-mnist
  batch_size: 64
  test_batch_size: 500
  train_limit: 1280
  test_limit: 1000
  normalize: {mean: [0.2860], std: [0.3530]}
pretrain:
  epochs: 1
  optimizer: {name: sgd, lr: 0.002, momentum: 0}
evaluate: true
export: {latency: false}
distributed: {sync_bn: true, timeout: 20}
YAML
two=(--nproc 2 --set data.batch_size=32)

# max |a - b| over the parameters and buffers of two TorchScript files
max_diff() {
  "$py" - "$1" "$2" <<'PY'
import sys, torch
a = torch.jit.load(sys.argv[1]).state_dict()
b = torch.jit.load(sys.argv[2]).state_dict()
assert a.keys() == b.keys()
print(max((a[k].double() - b[k].double()).abs().max().item() for k in a))
PY
}

echo "== fp32: 2 ranks x 32 against 1 rank x 64, 20 steps"
"$shrink" run "$work/exp.yaml" --out "$work/fp1" > "$work/fp1.log"
"$shrink" run "$work/exp.yaml" --out "$work/fp2" "${two[@]}" > "$work/fp2.log" 2> "$work/fp2.err"
grep -q "^data: 1280 training, 1000 test samples .*; 2 ranks, each training on 1/2 of every epoch (batch 32 each, 64 in all)$" "$work/fp2.log" \
  || fail "no data line: $(cat "$work/fp2.log")"
[ "$(grep -c "^pretrain epoch 1/1" "$work/fp2.log")" = 1 ] || fail "progress not from rank 0 alone"
# Rank 0 says what it loaded, once; the other rank says nothing.
[ "$(cat "$work/fp2.err")" = "shrink: info: 7 plugins from 1 folder" ] || fail "stderr: $(cat "$work/fp2.err")"
d=$(max_diff "$work/fp1/model_fp32.pt" "$work/fp2/model_fp32.pt")
echo "max parameter difference after 20 steps: $d"
"$py" -c "import sys; sys.exit(0 if $d <= 1e-5 else 1)" || fail "fp32 parameters differ by $d"
"$py" - "$work/fp1/report.json" "$work/fp2/report.json" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
# Sharded evaluation counts each test sample once: the same accuracy, within one sample.
assert abs(a["metrics"]["baseline_accuracy"] - b["metrics"]["baseline_accuracy"]) <= 0.001, (a["metrics"], b["metrics"])
assert b["train"]["pretrain"]["steps_done"] == 20 and b["train"]["pretrain"]["images"] == 1280, b["train"]
PY

# QAT from the initial weights: after pretraining, fake-quant rounding turns fp32 rounding into
# steps of a quantization level, and 1 vs 2 threads in one process already differ by 1e-5
# (docs/distributed.md#equivalence).
# Real torchrun (python3-torch's) starting shrink: its agent hosts the store, the ranks are its
# clients. Debian's torchrun 1.13 fails under Python 3.11 before it starts a worker (Std.from_str
# finds no member for "0": 3.11's enum no longer lists the zero flag); this mends that function.
cat > "$work/torchrun.py" <<'PY'
import sys
from torch.distributed.elastic.multiprocessing import api
original = api.Std.from_str.__func__
api.Std.from_str = classmethod(lambda cls, vm: api.Std.NONE if vm == "0" else original(cls, vm))
from torch.distributed.run import main
sys.exit(main())
PY
echo "== torchrun --no_python --nproc_per_node=2 shrink run: the --nproc run's model, bit for bit"
port=$("$py" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
OMP_NUM_THREADS=1 "$py" "$work/torchrun.py" --no_python --nproc_per_node=2 --master_addr=127.0.0.1 \
  --master_port="$port" "$shrink" run "$work/exp.yaml" --out "$work/tr" --set data.batch_size=32 \
  > "$work/tr.log" 2>&1 || fail "torchrun: $(tail -5 "$work/tr.log")"
grep -q "^data: .*; 2 ranks, each training on 1/2 of every epoch" "$work/tr.log" || fail "$(cat "$work/tr.log")"
d=$(max_diff "$work/fp2/model_fp32.pt" "$work/tr/model_fp32.pt")
[ "$d" = "0.0" ] || fail "torchrun's run differs from --nproc's by $d"

echo "== QAT: qat fine-tuned 20 steps (EMA ranges over both ranks' batches), 2 x 32 against 1 x 64"
qat=(--set pretrain.epochs=0
     --set 'compress=[{plugin: qat, config_list: [{op_names: [conv1, conv2, fc1, fc2], target_names: [_input_, weight, _output_], quant_dtype: int8, quant_scheme: affine}, {op_names: [relu1, relu2, relu3], target_names: [_output_], quant_dtype: int8, quant_scheme: affine}]}]'
     --set 'finetune={epochs: 1, optimizer: {name: sgd, lr: 0.002, momentum: 0}}')
"$shrink" run "$work/exp.yaml" --out "$work/q1" "${qat[@]}" > "$work/q1.log"
"$shrink" run "$work/exp.yaml" --out "$work/q2" "${qat[@]}" "${two[@]}" > "$work/q2.log"
d=$(max_diff "$work/q1/model_qat.pt" "$work/q2/model_qat.pt")
echo "max parameter difference after 20 QAT steps: $d"
"$py" -c "import sys; sys.exit(0 if $d <= 1e-5 else 1)" || fail "QAT parameters differ by $d"
"$py" - "$work/q1/calibration.json" "$work/q2/calibration.json" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
assert a.keys() == b.keys()
for op in a:
    for target in a[op]:
        x, y = a[op][target], b[op][target]
        assert x["zero_point"] == y["zero_point"], (op, target, x, y)
        assert abs(x["scale"] - y["scale"]) <= 1e-5 * x["scale"], (op, target, x, y)
PY

echo "== a quantizer that keeps its own rank's statistics is named at the epoch's end"
if "$shrink" run "$work/exp.yaml" --out "$work/unsynced" "${two[@]}" --plugin-path "$test_plugins/unsynced_range" \
     --set 'compress=[{plugin: unsynced_range, config_list: [{op_names: [fc2], target_names: [_output_]}]}]' \
     --set 'finetune={epochs: 1}' --set export.model=false > "$work/unsynced.log" 2> "$work/unsynced.err"; then
  fail "ranks that disagree went unnoticed"
fi
[ "$(grep -vc "^shrink: info:" "$work/unsynced.err")" = 1 ] || fail "not one line: $(cat "$work/unsynced.err")"
grep -q "^shrink: error: finetune epoch 1: unsynced_range site fc2._output_0 differs between ranks (a plugin that keeps statistics of its own data must combine them with the host's all_reduce: docs/distributed.md#plugins)$" "$work/unsynced.err" \
  || fail "$(cat "$work/unsynced.err")"
[ ! -e "$work/unsynced/report.json" ] || fail "a failed run wrote results"

echo "== taylor pruning on 2 ranks masks what 1 rank masks (importance over both ranks' samples)"
taylor=(--set 'compress=[{plugin: taylor, config_list: [{op_names: [conv1, conv2], sparse_ratio: 0.4}], schedule: {kind: linear, updates: 2}, train: {steps: 20, optimizer: {name: sgd, lr: 0.002, momentum: 0}}}]')
"$shrink" run "$work/exp.yaml" --out "$work/t1" "${taylor[@]}" > "$work/t1.log"
"$shrink" run "$work/exp.yaml" --out "$work/t2" "${taylor[@]}" "${two[@]}" > "$work/t2.log"
"$py" - "$work/t1/masks.pt" "$work/t2/masks.pt" <<'PY'
import sys, torch
a, b = (torch.load(f) for f in sys.argv[1:])
assert a.keys() == b.keys() == {"conv1", "conv2", "batchnorm1"}, (a.keys(), b.keys())
for op in a:
    for kind in a[op]:
        assert torch.equal(a[op][kind], b[op][kind]), (op, kind)
for op in ("conv1", "conv2"):
    kept = a[op]["weight_mask"].flatten(1).any(1).sum().item()
    print(op, "filters kept", kept, "of", a[op]["weight_mask"].shape[0])
PY

echo "== ptq calibrated on 2 ranks (5 samples a batch each) = 1 rank (10), every estimator"
ptq=(--set export.int8_only_if_faster=false --set "model=$model_dir/mnist.pt" --set data.train_limit=1280 --set data.test_limit=1000
     --set pretrain.epochs=0 --set threads=1 --set export.latency=false)
for estimator in minmax moving_average_minmax percentile mse entropy; do
  "$shrink" run "$src/configs/ptq_quickstart.yaml" --out "$work/p1_$estimator" "${ptq[@]}" \
    --set "compress.0.options.estimator=$estimator" > "$work/p1.log"
  "$shrink" run "$src/configs/ptq_quickstart.yaml" --out "$work/p2_$estimator" "${ptq[@]}" \
    --set "compress.0.options.estimator=$estimator" --set compress.0.calibration.batch_size=5 \
    --nproc 2 > "$work/p2.log"
  grep -q "^calibrate: ptq on 100 samples (10 batches of 5 on each of 2 ranks)" "$work/p2.log" \
    || fail "no calibration line: $(cat "$work/p2.log")"
  cmp "$work/p1_$estimator/calibration.json" "$work/p2_$estimator/calibration.json" \
    || fail "$estimator: calibration.json differs between 1 and 2 ranks"
  echo "$estimator: the same calibration.json"
done

# The ranks of the run writing into `out`, as "rank pid" lines (the launcher's children).
ranks_of() {
  local launcher
  launcher=$(pgrep -f -- "--out $1 " | head -1)
  for p in $(pgrep -P "$launcher"); do
    echo "$(tr '\0' '\n' < /proc/$p/environ | sed -n 's/^RANK=//p') $p"
  done
}

long=(--set data.train_limit=9600 --set pretrain.epochs=3 --set "distributed.timeout=10" "${two[@]}")
echo "== uninterrupted: 3 epochs on 2 ranks"
"$shrink" run "$work/exp.yaml" --out "$work/whole" "${long[@]}" > "$work/whole.log"

echo "== rank 1 killed in epoch 2: rank 0 names it within the timeout; --resume completes"
"$shrink" run "$work/exp.yaml" --out "$work/k" "${long[@]}" > "$work/k.log" 2> "$work/k.err" &
run=$!
for _ in $(seq 600); do [ -s "$work/k/checkpoint.pt" ] && break; sleep 0.05; done
[ -s "$work/k/checkpoint.pt" ] || fail "no checkpoint after epoch 1"
rank1=$(ranks_of "$work/k" | awk '$1 == 1 {print $2}')
sleep 0.3
kill -KILL "$rank1"
start=$(date +%s)
if wait "$run"; then fail "the run survived a dead rank"; fi
took=$(( $(date +%s) - start ))
echo "exited $took s after the kill"
[ "$took" -le 10 ] || fail "took $took s to notice"
grep -q "^shrink: --nproc: rank 1 was ended by signal 9 (Killed)$" "$work/k.err" || fail "$(cat "$work/k.err")"
grep -q "^shrink: error: rank 0: .*: lost the other ranks: rank 1 stopped (killed, or frozen: no heartbeat for 2.5 s)" "$work/k.err" \
  || fail "$(cat "$work/k.err")"
pgrep -f -- "--out $work/k " > /dev/null && fail "a process was left behind"
grep -q "^pretrain epoch 1/3" "$work/k.log" || fail "epoch 1 did not end before the kill"
echo "-- resumed on 1 rank: refused"
if "$shrink" run "$work/exp.yaml" --out "$work/k" --set data.train_limit=9600 --set pretrain.epochs=3 \
     --set distributed.timeout=10 --set data.batch_size=32 --resume > /dev/null 2> "$work/k1.err"; then
  fail "resumed a 2-rank checkpoint on 1 rank"
fi
grep -q "checkpoint.pt: was written by a run on 2 ranks; this one has 1: resume on as many" "$work/k1.err" \
  || fail "$(cat "$work/k1.err")"
echo "-- resumed on 3 ranks: refused, in one line (every rank finds it; rank 0 says it)"
if "$shrink" run "$work/exp.yaml" --out "$work/k" --set data.train_limit=9600 --set pretrain.epochs=3 \
     --set distributed.timeout=10 --set data.batch_size=32 --resume --nproc 3 > /dev/null 2> "$work/k3.err"; then
  fail "resumed a 2-rank checkpoint on 3 ranks"
fi
[ "$(grep -vc "^shrink: info:" "$work/k3.err")" = 1 ] || fail "not one line: $(cat "$work/k3.err")"
grep -q "^shrink: error: $work/k/checkpoint.pt: was written by a run on 2 ranks; this one has 3" "$work/k3.err" \
  || fail "$(cat "$work/k3.err")"
"$shrink" run "$work/exp.yaml" --out "$work/k" "${long[@]}" --resume > "$work/k2.log"
grep -q "^resuming after pretrain epoch [12] from $work/k/checkpoint.pt$" "$work/k2.log" || fail "$(cat "$work/k2.log")"
d=$(max_diff "$work/whole/model_fp32.pt" "$work/k/model_fp32.pt")
[ "$d" = "0.0" ] || fail "the resumed run differs from the uninterrupted one by $d"
echo "resumed = uninterrupted, bit for bit"

echo "== rank 1 frozen (SIGSTOP): rank 0 says so after the timeout; nothing is left behind"
"$shrink" run "$work/exp.yaml" --out "$work/h" "${long[@]}" --set distributed.timeout=3 > /dev/null 2> "$work/h.err" &
run=$!
for _ in $(seq 600); do [ -s "$work/h/checkpoint.pt" ] && break; sleep 0.05; done
rank1=$(ranks_of "$work/h" | awk '$1 == 1 {print $2}')
kill -STOP "$rank1"
start=$(date +%s)
if wait "$run"; then fail "the run survived a frozen rank"; fi
took=$(( $(date +%s) - start ))
echo "launcher exited $took s after the freeze"
grep -q "^shrink: error: rank 0: .*: lost the other ranks: rank 1 stopped (killed, or frozen: no heartbeat for 2.5 s) (.*)$" "$work/h.err" \
  || fail "$(cat "$work/h.err")"
grep -q "^shrink: --nproc: stopped the ranks still running 10 s after one failed$" "$work/h.err" || fail "$(cat "$work/h.err")"
[ "$took" -le 25 ] || fail "took $took s"
pgrep -f -- "--out $work/h " > /dev/null && fail "a process was left behind"
[ -s "$work/h/checkpoint.pt" ] || fail "the checkpoint of epoch 1 was lost"

# (SIGTERM: a background job of a script ignores SIGINT, the launcher and its ranks alike.)
echo "== SIGTERM to the launcher: every rank stops at the same batch; the hint resumes on 2 ranks"
"$shrink" run "$work/exp.yaml" --out "$work/i" "${long[@]}" > /dev/null 2> "$work/i.err" &
run=$!
for _ in $(seq 600); do [ -s "$work/i/checkpoint.pt" ] && break; sleep 0.05; done
kill -TERM "$run"
status=0
wait "$run" || status=$?
[ "$status" = 143 ] || fail "exit $status: $(cat "$work/i.err")"
grep -q "^shrink: interrupted by SIGTERM; $work/i/checkpoint.pt holds pretrain epoch [12], written [0-9: -]*; continue with: shrink run $work/exp.yaml --out $work/i --resume --nproc 2 (and the same --set options)$" "$work/i.err" \
  || fail "$(cat "$work/i.err")"
[ "$(grep -vc "^shrink: info:" "$work/i.err")" = 1 ] || fail "not one line: $(cat "$work/i.err")"
pgrep -f -- "--out $work/i " > /dev/null && fail "a process was left behind"

echo "== the quick start, short, on --nproc 2: the files of a single-process run"
short=(--set export.int8_only_if_faster=false --set "model=$model_dir/mnist.pt" --set data.train_limit=3200 --set data.test_limit=1000
       --set pretrain.epochs=1 --set finetune.epochs=1 --set export.latency=false)
"$shrink" run "$src/configs/quickstart.yaml" --out "$work/qs1" "${short[@]}" --set threads=1 > /dev/null
"$shrink" run "$src/configs/quickstart.yaml" --out "$work/qs2" "${short[@]}" --set data.batch_size=32 \
  --set distributed.sync_bn=true --nproc 2 > "$work/qs2.log"
[ "$(cd "$work/qs1" && ls)" = "$(cd "$work/qs2" && ls)" ] || fail "other files: $(ls "$work/qs1") / $(ls "$work/qs2")"
# The quick start's threads: 2 would oversubscribe 2 cores with 2 ranks (6-15x slower).
if [ "$(nproc)" -le 2 ]; then
  grep -q "^threads: 2 lowered to 1: the 2 ranks on this machine share its $(nproc) cores$" "$work/qs2.log" \
    || fail "threads not lowered: $(head -3 "$work/qs2.log")"
fi
"$py" - "$work/qs1" "$work/qs2" <<'PY'
import json, sys
a, b = (json.load(open(d + "/report.json")) for d in sys.argv[1:])
for k in ("baseline_accuracy", "compressed_accuracy", "exported_accuracy", "int8_accuracy"):
    # docs/distributed.md#equivalence: the same training up to fp32 rounding, which the quick
    # start's lr 0.01 with momentum grows: one process on 1 and on 2 threads ends 0.011 apart
    # here (compressed accuracy, 1000 test samples), and 2 ranks as far from either.
    assert abs(a["metrics"][k] - b["metrics"][k]) <= 0.02, (k, a["metrics"], b["metrics"])
ca, cb = (json.load(open(d + "/calibration.json")) for d in sys.argv[1:])
assert ca.keys() == cb.keys()
assert b["distributed"] == {"world": 2, "backend": "gloo", "sync_bn": True}, b.get("distributed")
assert a["distributed"] == {"world": 1, "backend": "gloo", "sync_bn": False}, a.get("distributed")
print(a["metrics"], b["metrics"])
PY

echo "== what a user gets wrong"
expect_error() {  # expect_error LINE -- command...
  local want=$1; shift 2
  if "$@" > /dev/null 2> "$work/err.txt"; then fail "accepted: $*"; fi
  [ "$(grep -vc "^shrink: info:" "$work/err.txt")" = 1 ] || fail "not one line: $(cat "$work/err.txt")"
  grep -qF -- "$want" "$work/err.txt" || fail "expected '$want', got: $(cat "$work/err.txt")"
}
expect_error "shrink: error: --nproc: this process is already rank 0 of 2 (started by torchrun); leave --nproc to one of them" -- \
  env RANK=0 WORLD_SIZE=2 "$shrink" run "$work/exp.yaml" --out "$work/e1" --nproc 2
expect_error "shrink: error: environment: RANK=one: expected an integer in [0, 1]" -- \
  env RANK=one WORLD_SIZE=2 "$shrink" run "$work/exp.yaml" --out "$work/e2"
expect_error "shrink: error: distributed.backend: nccl needs a LibTorch built with CUDA and NCCL; this Shrink was built against one without CUDA (Debian's libtorch-dev): use gloo" -- \
  "$shrink" run "$work/exp.yaml" --out "$work/e3" --nproc 2 --set distributed.backend=nccl
expect_error "distributed.timeout: 0 is below the minimum 1" -- \
  "$shrink" run "$work/exp.yaml" --out "$work/e4" --set distributed.timeout=0
expect_error "distributed.sync: unknown key (allowed: backend, timeout, sync_bn)" -- \
  "$shrink" run "$work/exp.yaml" --out "$work/e5" --set distributed.sync=true
# A rank that never comes: rank 0 alone waits the timeout, then says so.
port=$("$py" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
expect_error "could not join the process group at 127.0.0.1:$port (MASTER_ADDR:MASTER_PORT) within 2 s" -- \
  env RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$shrink" run "$work/exp.yaml" --out "$work/e6" --set distributed.timeout=2
[ ! -e "$work/e6" ] || fail "a run that never started left its folder"
# Another program on MASTER_PORT: rank 0 cannot host the store there; rank 1, whose connection
# that program takes and never answers, gives up at its deadline instead of waiting for ever.
"$py" -m http.server "$port" --bind 127.0.0.1 > /dev/null 2>&1 &
server=$!
sleep 1
expect_error "shrink: error: rank 0 of 2: could not join the process group at 127.0.0.1:$port (MASTER_ADDR:MASTER_PORT) within 2 s: The server socket has failed to listen" -- \
  env RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$shrink" run "$work/exp.yaml" --out "$work/e7" --set distributed.timeout=2
start=$(date +%s)
expect_error "shrink: error: rank 1 of 2: could not join the process group at 127.0.0.1:$port (MASTER_ADDR:MASTER_PORT) within 2 s: no answer from the store there (is another program listening on that port?)" -- \
  env RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$shrink" run "$work/exp.yaml" --out "$work/e8" --set distributed.timeout=2
[ $(( $(date +%s) - start )) -le 15 ] || fail "rank 1 waited past its deadline"
kill "$server"
echo "distributed: all passed"
