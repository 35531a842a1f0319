#!/usr/bin/env bash
# What `shrink` says when something is wrong, and how much it says when nothing is: --set errors
# naming the override, a refused plugin named with why, the plugin's own line from inside a run,
# command-line paths against the current folder, one log line for loading. Runs only --print-plan
# and failing runs: nothing trains.
# Usage: messages_cli_test.sh SHRINK_EXE TEST_PLUGIN_DIR MODEL_DIR SOURCE_DIR
set -u
shrink=$1
plugins=$2
model_dir=$3
src=$4
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset SHRINK_PLUGIN_PATH SHRINK_LOG SPDLOG_LEVEL
exp="$src/configs/quickstart.yaml"
model=(--set "model=$model_dir/mnist.pt")

# expect_error NAME EXPECTED-TEXT ARGS...: `shrink ARGS` fails with exactly one error line holding
# EXPECTED-TEXT (fixed string).
expect_error() {
  local name=$1 expected=$2
  shift 2
  if "$shrink" "$@" >"$work/out" 2>"$work/err"; then
    fail "$name: exited 0"
    return
  fi
  [ "$(grep -c '^shrink: error: ' "$work/err")" -eq 1 ] || fail "$name: expected one error line: $(cat "$work/err")"
  grep -qF -- "$expected" "$work/err" || fail "$name: expected '$expected' in: $(cat "$work/err")"
}

# --set: what was expected, the override named instead of a position in the file.
expect_error set_no_index "--set 'compress.plugin=x': compress is a list, so the next part of the path is an index, e.g. compress.0.plugin" \
  run "$exp" --print-plan "${model[@]}" --set compress.plugin=x
grep -q stoul "$work/err" && fail "set_no_index: stoul leaked: $(cat "$work/err")"
expect_error set_value "--set 'finetune.epochs=many': finetune.epochs: expected an integer" \
  run "$exp" --print-plan "${model[@]}" --set finetune.epochs=many
grep -q 'quickstart.yaml:1:1' "$work/err" && fail "set_value: blamed on the file's first line"
expect_error set_stage "--set 'compress.0={plugin: qat, config_list: [{op_names: [conv1]}], fold_bn: maybe}': compress[0].fold_bn: expected true or false" \
  run "$exp" --print-plan "${model[@]}" --set 'compress.0={plugin: qat, config_list: [{op_names: [conv1]}], fold_bn: maybe}'

# Paths given on the command line resolve against the current folder, as --out does; paths in the
# file against the file's folder.
mkdir -p "$work/cwd"
(cd "$work/cwd" && "$shrink" run "$exp" --print-plan --set "model=$model_dir/mnist.pt" --set export.dir=from_set \
   >"$work/plan_set" 2>"$work/err") || fail "plan with --set export.dir: $(cat "$work/err")"
grep -q "export    $work/cwd/from_set " "$work/plan_set" || fail "--set export.dir not under the current folder: $(cat "$work/plan_set")"
(cd "$work/cwd" && "$shrink" run "$exp" --print-plan "${model[@]}" >"$work/plan_file" 2>"$work/err") \
  || fail "plan: $(cat "$work/err")"
grep -q "export    $src/shrink-out/quickstart " "$work/plan_file" || fail "export.dir from the file: $(cat "$work/plan_file")"

# A plugin found but refused: the run names the file and why, not "add its folder".
expect_error refused_torch "algorithm 'other_torch_pruner' is in $plugins/wrong_torch/wrong_torch.so, which was refused: built against LibTorch 0.0.1" \
  --plugin-path "$plugins/wrong_torch" run "$exp" --print-plan "${model[@]}" --set compress.0.plugin=other_torch_pruner
grep -q 'add its folder' "$work/err" && fail "refused_torch: suggests adding the folder"
expect_error refused_major "wrong_abi.so refused: built for ABI 2.0" \
  --plugin-path "$plugins/wrong_abi" run "$exp" --print-plan "${model[@]}" --set compress.0.plugin=abi2_algorithm

# A plugin's own line from inside the model's forward, not a TorchScript traceback.
expect_error throwing_in_run "plugin 'throwing' (quantizer 'throwing'), site conv1.weight: quantize_weight failed: deliberate failure in quantize_weight" \
  --plugin-path "$plugins/throwing" run "$exp" "${model[@]}" --out "$work/t" --set compress.0.plugin=throwing \
  --set data.train_limit=64 --set data.test_limit=64 --set pretrain.epochs=0 --set finetune.steps=1 \
  --set 'compress.0.config_list=[{op_names: [conv1], target_names: [weight]}]' --set evaluate=false --set export.model=false --set export.int8=false
grep -q 'Traceback\|TorchScript interpreter' "$work/err" && fail "throwing_in_run: traceback printed: $(cat "$work/err")"

# Loading: one summary line by default; each plugin at debug, from --log-level or the environment.
"$shrink" plugins >/dev/null 2>"$work/err" || fail "plugins exited $?"
[ "$(grep -c '^shrink: info: ' "$work/err")" -eq 1 ] || fail "default loading is not one line: $(cat "$work/err")"
grep -q '^shrink: info: [0-9]* plugins from 1 folder$' "$work/err" || fail "summary line: $(cat "$work/err")"
"$shrink" plugins --log-level debug >/dev/null 2>"$work/err"
grep -q '^shrink: debug: loaded plugin naive ' "$work/err" || fail "--log-level debug: $(cat "$work/err")"
SHRINK_LOG=debug "$shrink" plugins >/dev/null 2>"$work/err"
grep -q '^shrink: debug: loaded plugin qat ' "$work/err" || fail "SHRINK_LOG=debug: $(cat "$work/err")"
SPDLOG_LEVEL=shrink=debug "$shrink" plugins >/dev/null 2>"$work/err"
grep -q '^shrink: debug: loaded plugin' "$work/err" || fail "SPDLOG_LEVEL=shrink=debug: $(cat "$work/err")"
SHRINK_LOG=warn "$shrink" plugins >/dev/null 2>"$work/err"
[ ! -s "$work/err" ] || fail "SHRINK_LOG=warn still logs: $(cat "$work/err")"
SHRINK_LOG=warn "$shrink" plugins --log-level info >/dev/null 2>"$work/err"
grep -q '^shrink: info: ' "$work/err" || fail "--log-level does not override SHRINK_LOG"
SHRINK_LOG=loud "$shrink" plugins >/dev/null 2>"$work/err"
grep -q "SHRINK_LOG is 'loud', not one of" "$work/err" || fail "bad SHRINK_LOG not reported: $(cat "$work/err")"

if [ "$failures" -eq 0 ]; then echo "messages cli tests: all passed"; fi
exit "$failures"
