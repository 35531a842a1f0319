#!/usr/bin/env bash
# The `shrink` CLI as a user runs it: plugins listing, JSON, bad candidates, version, help, check.
# Usage: plugins_cli_test.sh <shrink executable> <test plugin folder>
set -u
shrink=$1
plugins=$2
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset SHRINK_PLUGIN_PATH

# Lists the installed (build-tree) plugins.
out=$("$shrink" plugins 2>"$tmp/err") || fail "shrink plugins exited $?"
grep -q '^naive ' <<<"$out" || fail "shrink plugins does not list naive: $out"
grep -q 'NAME' <<<"$out" || fail "no table header: $out"

# --version and help.
"$shrink" --version | grep -q '^shrink [0-9]\+\.[0-9]\+\.[0-9]\+ (plugin ABI 1\.7' || fail "--version"
"$shrink" help | grep -q 'plugins' || fail "help does not mention plugins"

# JSON is valid and lists naive with its capabilities.
"$shrink" plugins --json 2>/dev/null >"$tmp/plugins.json" || fail "plugins --json exited $?"
python3 - "$tmp/plugins.json" <<'PY' || fail "plugins --json content"
import json, sys
data = json.load(open(sys.argv[1]))
naive = [a for a in data["algorithms"] if a["name"] == "naive"]
assert naive, data
assert naive[0]["kind"] == "quantizer", naive
assert "export" in naive[0]["capabilities"], naive
assert naive[0]["abi"] == "1.7", naive
qat = [a for a in data["algorithms"] if a["name"] == "qat"][0]
assert qat["site_keys"] == ["quant_start_step"], qat
taylor = [a for a in data["algorithms"] if a["name"] == "taylor"][0]
assert "ranks-in-training" in taylor["capabilities"], taylor
PY

# A folder with a corrupt .so, a text file and a wrong-ABI plugin: one clear line each, the good
# plugins still listed, exit 0 (nothing was asked for by name).
mkdir "$tmp/bad"
head -c 1000 "$plugins/c_round/c_round.so" >"$tmp/bad/corrupt.so"
echo "not a plugin" >"$tmp/bad/notes.txt"
cp "$plugins/wrong_abi/wrong_abi.so" "$tmp/bad/"
out=$(SHRINK_PLUGIN_PATH="$tmp/bad" "$shrink" plugins 2>"$tmp/err")
rc=$?
[ "$rc" -eq 0 ] || fail "bad folder on SHRINK_PLUGIN_PATH: exit $rc, expected 0"
grep -q '^naive ' <<<"$out" || fail "good plugins not listed beside bad ones"
for name in corrupt.so notes.txt wrong_abi.so; do
  n=$(grep -c "$name" "$tmp/err")
  [ "$n" -eq 1 ] || fail "expected exactly one line about $name, got $n: $(cat "$tmp/err")"
done
grep 'corrupt.so' "$tmp/err" | grep -q 'corrupt shared library' || fail "corrupt.so reason"
grep 'notes.txt' "$tmp/err" | grep -q 'not a shared library' || fail "notes.txt reason"
grep 'wrong_abi.so' "$tmp/err" | grep -q 'ABI 2.0.*ABI 1.7' || fail "wrong_abi.so reason"

# Asking for a plugin file that fails, or an algorithm that is missing: non-zero.
"$shrink" plugins --plugin-path "$tmp/bad/wrong_abi.so" >/dev/null 2>&1 && fail "requested bad plugin exited 0"
"$shrink" plugins no_such_algorithm >/dev/null 2>"$tmp/err" && fail "missing algorithm exited 0"
grep -q "no plugin provides algorithm 'no_such_algorithm'" "$tmp/err" || fail "missing algorithm message: $(cat "$tmp/err")"

# check runs an algorithm end to end.
"$shrink" check naive 2>/dev/null | grep -q 'naive: quantize_weight ok' || fail "check naive"
"$shrink" --plugin-path "$plugins/seed_examples" check my_pruner --sparsity 0.75 2>/dev/null \
  | grep -q 'keeps 0.25' || fail "check my_pruner"
"$shrink" --plugin-path "$plugins/throwing" check throwing >/dev/null 2>"$tmp/err" && fail "throwing check exited 0"
grep -q "^shrink: error: plugin 'throwing' (quantizer 'throwing'), site check.conv.weight: quantize_weight failed: deliberate failure in quantize_weight$" "$tmp/err" \
  || fail "throwing message: $(cat "$tmp/err")"
[ "$(grep -c 'error' "$tmp/err")" -eq 1 ] || fail "expected one error line: $(cat "$tmp/err")"

# check covers the whole plugin: each author's trap is a non-zero exit and one line naming the
# plugin, the site and what is wrong.
expect_check_error() {  # name folder expected-line-part [check args...]
  local name=$1 folder=$2 expected=$3
  shift 3
  if "$shrink" --plugin-path "$plugins/$folder" check "$@" >"$tmp/out" 2>"$tmp/err"; then
    fail "$name: check exited 0: $(cat "$tmp/out")"
    return
  fi
  [ "$(grep -c '^shrink: error: ' "$tmp/err")" -eq 1 ] || fail "$name: expected one error line: $(cat "$tmp/err")"
  grep -qF -- "$expected" "$tmp/err" || fail "$name: expected '$expected' in: $(cat "$tmp/err")"
}
expect_check_error float64 returns_float64 \
  "plugin 'returns_float64' (quantizer 'returns_float64'), site check.conv.weight: quantize_weight returned float64, expected float32" \
  returns_float64
expect_check_error shape returns_wrong_shape "quantize_weight returned shape [8, 36], expected [8, 4, 3, 3]" returns_wrong_shape
expect_check_error nan returns_nan \
  "plugin 'returns_nan' (quantizer 'returns_nan'), site check.conv.weight: quantize_weight returned 288 non-finite value(s)" \
  returns_nan
expect_check_error export_throws throws_in_export "site check.conv.weight: export_site failed: no range recorded for weight" \
  throws_in_export
expect_check_error export_zero_scale bad_export_scale "export_site returned a scale that is not positive and finite" \
  bad_export_scale
expect_check_error export_scale_count bad_export_scale "export_site returned a scale of shape [3], expected 1 element or one per channel (8)" \
  bad_export_scale --option mistake=count
expect_check_error nan_mask nan_mask "plugin 'nan_mask' (masker 'nan_mask'), op check.conv: importance returned 8 non-finite" nan_mask
expect_check_error int_mask nan_mask "op check.conv: calc_mask returned a int64 mask" nan_mask --option mistake=int
expect_check_error site_key pact "--site 'alpha_int=2': unknown key 'alpha_int' (allowed: op_names" pact --site alpha_int=2

# A whole plugin checked: sites it refuses are notes, declared state, parameter gradients, export.
out=$("$shrink" --plugin-path "$plugins/pact" check pact --site alpha_init=2 2>"$tmp/err") || fail "check pact: $(cat "$tmp/err")"
grep -q 'check.conv.weight: not set up: .*pact quantizes activations' <<<"$out" || fail "pact weight note: $out"
grep -q 'pact: quantize_input ok at check.conv._input_' <<<"$out" || fail "pact input: $out"
grep -q 'state: alpha parameter \[1\] (no weight decay)' <<<"$out" || fail "pact state: $out"
grep -q "gradient of 'alpha' ok: shape \[1\]" <<<"$out" || fail "pact gradient: $out"
out=$("$shrink" check qat 2>"$tmp/err") || fail "check qat: $(cat "$tmp/err")"
for site in weight _input_ _output_; do
  grep -q "qat: quantize_[a-z]* ok at check.conv.$site" <<<"$out" || fail "qat $site: $out"
done
[ "$(grep -c 'export_site ok: 1 scale(s)' <<<"$out")" -eq 3 ] || fail "qat exports: $out"
out=$("$shrink" check ptq 2>"$tmp/err") || fail "check ptq: $(cat "$tmp/err")"
grep -q 'export_site ok: 8 scale(s)' <<<"$out" || fail "ptq calibrates, then exports per channel: $out"
out=$("$shrink" check taylor --sparsity 0.5 2>"$tmp/err") || fail "check taylor: $(cat "$tmp/err")"
grep -q 'taylor: observe ok' <<<"$out" && grep -q 'keeps 0.5 of the weights' <<<"$out" || fail "check taylor: $out"
# C plugins: the const data accessor and a declared site key; the installed C template.
"$shrink" --plugin-path "$plugins/c_clip" check c_clip --site clip=0.5 2>/dev/null | grep -q 'c_clip: quantize_weight ok' \
  || fail "check c_clip"
out=$("$shrink" --plugin-path "$plugins/c_template" check my_c_round --site truncate=true 2>"$tmp/err") \
  || fail "check my_c_round: $(cat "$tmp/err")"
grep -q 'my_c_round: quantize_weight ok' <<<"$out" && grep -q 'state: scale buffer \[\]' <<<"$out" \
  && grep -q 'export_site ok: 1 scale(s)' <<<"$out" || fail "check my_c_round: $out"

if [ "$failures" -eq 0 ]; then echo "cli tests: all passed"; fi
exit "$failures"
