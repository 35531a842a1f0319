#!/usr/bin/env bash
# Nothing lost, nothing silently wrong, as a user meets it: a full disk (a real one, a small tmpfs),
# two runs into one folder, a new run over an interrupted one, Ctrl-C and SIGTERM, staging names,
# the export and bench commands given the wrong thing, unwritable output folders.
# Usage: reliability_cli_test.sh SHRINK_EXE MODEL_DIR SOURCE_DIR
set -uo pipefail
shrink=$1
model_dir=$2
src=$3
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
work=$(mktemp -d)
mounts=()
cleanup() {
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
exp="$src/configs/quickstart.yaml"
tiny=(--set "model=$model_dir/mnist.pt" --set data.train_limit=640 --set data.test_limit=200
      --set pretrain.epochs=2 --set finetune.epochs=1 --set export.int8=false)

# expect_error NAME EXPECTED-TEXT ARGS...: `shrink ARGS` exits 1 with one error line holding
# EXPECTED-TEXT (fixed string).
expect_error() {
  local name=$1 expected=$2
  shift 2
  "$shrink" "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  [ "$rc" -eq 1 ] || fail "$name: exit $rc, expected 1: $(cat "$work/err")"
  [ "$(grep -c '^shrink: error: ' "$work/err")" -eq 1 ] || fail "$name: expected one error line: $(cat "$work/err")"
  grep -qF -- "$expected" "$work/err" || fail "$name: expected '$expected' in: $(cat "$work/err")"
}
# tmpfs SIZE OPTIONS: a fresh tmpfs of SIZE at $work/disk ("" where mounting is not permitted).
tmpfs() {
  mkdir -p "$work/disk"
  umount "$work/disk" 2>/dev/null
  if mount -t tmpfs -o "size=$1${2:+,$2}" tmpfs "$work/disk" 2>/dev/null; then
    mounts=("$work/disk")
    echo "$work/disk"
  fi
}
no_temporaries() {
  local left
  left=$(find "$1" -name '*.tmp' -o -name '.staging.*' 2>/dev/null)
  [ -z "$left" ] || fail "$2: temporary files left behind: $left"
}

echo "== a full disk: one line, no abort, the previous checkpoint intact, then --resume"
disk=$(tmpfs 2m)
if [ -z "$disk" ]; then
  echo "skipped: mounting a tmpfs is not permitted here"
else
  expect_error disk_2m "no space left writing $disk/out/checkpoint.pt: " run "$exp" "${tiny[@]}" --out "$disk/out"
  grep -q "bytes needed, .* free" "$work/err" || fail "disk_2m: no byte counts: $(cat "$work/err")"
  no_temporaries "$disk" disk_2m
  # 5 MB: the first checkpoint (3.5 MB) fits, the second cannot sit beside it.
  disk=$(tmpfs 5m)
  expect_error disk_5m "no space left writing $disk/out/checkpoint.pt" run "$exp" "${tiny[@]}" --out "$disk/out"
  grep -q "^pretrain epoch 1/2" "$work/out" || fail "disk_5m: the first epoch did not end"
  no_temporaries "$disk" disk_5m
  mount -o remount,size=64m "$disk" || fail "remount"
  "$shrink" run "$exp" "${tiny[@]}" --out "$disk/out" --resume >"$work/resumed" 2>&1 \
    || fail "disk_5m: --resume after the full disk failed: $(cat "$work/resumed")"
  grep -q "^pretrain epoch 2/2" "$work/resumed" || fail "disk_5m: resume did not start at epoch 2"
  [ -s "$disk/out/report.json" ] && [ -s "$disk/out/model_qat.pt" ] || fail "disk_5m: no results after resume"
  no_temporaries "$disk" disk_5m_resumed
  umount "$disk"
  mounts=()
fi

echo "== unwritable output folders fail at the plan check"
touch "$work/a_file"
expect_error out_is_file "output folder $work/a_file: $work/a_file is a file, not a folder" \
  run "$exp" "${tiny[@]}" --print-plan --out "$work/a_file"
disk=$(tmpfs 1m ro)
if [ -n "$disk" ]; then
  expect_error out_read_only "output folder $disk/out: $disk is not writable (Read-only file system)" \
    run "$exp" "${tiny[@]}" --print-plan --out "$disk/out"
  umount "$disk"
  mounts=()
fi

echo "== two runs into one folder; Ctrl-C; a new run over an interrupted one"
long=(--set "model=$model_dir/mnist.pt" --set data.train_limit=12800 --set data.test_limit=200
      --set pretrain.epochs=30 --set finetune.epochs=0 --set export.int8=false)
echo "keep me" > "$work/b.partial"  # a user's file named like the old staging folder
# Job control: without it a script's background jobs start with SIGINT ignored, and shrink keeps
# an ignored signal ignored.
set -m
# start_long_run NAME OUT PATTERN: the long run into OUT in the background (its pid in run_pid,
# its output in $work/NAME.log and NAME.err), returning once its log shows PATTERN.
start_long_run() {
  "$shrink" run "$exp" "${long[@]}" --out "$2" >"$work/$1.log" 2>"$work/$1.err" &
  run_pid=$!
  for _ in $(seq 600); do grep -q "$3" "$work/$1.log" && return; sleep 0.1; done
  fail "run $1 never printed '$3': $(cat "$work/$1.err")"
}
# stop_run SIGNAL RC: sends SIGNAL to the long run, which must exit with RC.
stop_run() {
  kill -"$1" "$run_pid"
  wait "$run_pid"
  local rc=$?
  [ "$rc" -eq "$2" ] || fail "SIG$1: exit $rc, expected $2"
}
start_long_run a "$work/b" "^pretrain epoch 1/30"
expect_error concurrent "$work/b: another run (pid $run_pid) is writing its results here" \
  run "$exp" "${tiny[@]}" --out "$work/b"
stop_run INT 130
grep -q "^shrink: interrupted by SIGINT; $work/b/checkpoint.pt holds pretrain epoch [1-4], written .*; continue with: shrink run $exp --out $work/b --resume (and the same --set options)$" "$work/a.err" \
  || fail "SIGINT message: $(cat "$work/a.err")"
[ -s "$work/b/checkpoint.pt" ] || fail "SIGINT: no checkpoint kept"
[ ! -e "$work/b/report.json" ] || fail "SIGINT: results written"
[ "$(cat "$work/b.partial")" = "keep me" ] || fail "the user's b.partial was touched"
no_temporaries "$work/b" sigint
expect_error over_checkpoint "$work/b holds a checkpoint (pretrain epoch" run "$exp" "${tiny[@]}" --out "$work/b"
grep -qF "): pass --resume to continue it or --fresh to discard it" "$work/err" || fail "over_checkpoint: $(cat "$work/err")"
[ -s "$work/b/checkpoint.pt" ] || fail "the refused run touched the checkpoint"
"$shrink" run "$exp" "${tiny[@]}" --out "$work/b" --fresh >"$work/fresh.log" 2>&1 || fail "--fresh: $(cat "$work/fresh.log")"
[ -s "$work/b/report.json" ] && [ ! -e "$work/b/checkpoint.pt" ] || fail "--fresh: results or checkpoint wrong"

echo "== SIGTERM before the first epoch ends"
start_long_run c "$work/c" "^data: "
stop_run TERM 143
grep -q "^shrink: interrupted by SIGTERM; no epoch had ended, so nothing was kept$" "$work/c.err" \
  || fail "SIGTERM message: $(cat "$work/c.err")"

echo "== export and bench given the wrong thing"
int8="$work/b/model_int8.pt"
"$shrink" export "$work/b/model_qat.pt" --int8 -o "$int8" >/dev/null || fail "export --int8"
mkdir -p "$work/dir"
expect_error export_to_folder "export: -o $work/dir is a folder; give the file to write" \
  export "$work/b/model_qat.pt" --int8 -o "$work/dir"
[ -z "$(ls -A "$work/dir")" ] || fail "export_to_folder: wrote into the folder"
no_temporaries "$work/b" export_to_folder
expect_error fold_int8 "already runs int8 kernels" export "$int8" --fold-bn -o "$work/folded.pt"
expect_error export_self "is the model itself" export "$model_dir/mnist.pt" --fold-bn -o "$model_dir/mnist.pt"
expect_error bench_float_as_int8 "runs no int8 kernel" \
  bench "$model_dir/mnist.pt" --int8 "$model_dir/mnist.pt" --shape 1,28,28 --batch 1 --runs 2
expect_error bench_shape "bench: the fp32 model does not take input of shape [1, 3, 32, 32]: " \
  bench "$model_dir/mnist.pt" --shape 3,32,32 --batch 1 --runs 2
for bad in "--batch 0" "--runs 0" "--threads 5000"; do
  # shellcheck disable=SC2086
  "$shrink" bench "$model_dir/mnist.pt" --shape 1,28,28 $bad >"$work/out" 2>&1 && fail "bench $bad accepted"
  grep -q -- "${bad% *}: Value ${bad#* } not in range" "$work/out" || fail "bench $bad: $(cat "$work/out")"
done

[ "$failures" -eq 0 ] || { echo "$failures reliability check(s) failed"; exit 1; }
echo "all reliability CLI checks passed"
