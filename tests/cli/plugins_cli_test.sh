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
"$shrink" --version | grep -q '^shrink [0-9]\+\.[0-9]\+\.[0-9]\+ (plugin ABI 1\.4' || fail "--version"
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
assert naive[0]["abi"] == "1.4", naive
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
grep 'wrong_abi.so' "$tmp/err" | grep -q 'ABI 2.0.*ABI 1.4' || fail "wrong_abi.so reason"

# Asking for a plugin file that fails, or an algorithm that is missing: non-zero.
"$shrink" plugins --plugin-path "$tmp/bad/wrong_abi.so" >/dev/null 2>&1 && fail "requested bad plugin exited 0"
"$shrink" plugins no_such_algorithm >/dev/null 2>"$tmp/err" && fail "missing algorithm exited 0"
grep -q "no plugin provides algorithm 'no_such_algorithm'" "$tmp/err" || fail "missing algorithm message: $(cat "$tmp/err")"

# check runs an algorithm end to end.
"$shrink" check naive 2>/dev/null | grep -q 'naive: quantize_weight ok' || fail "check naive"
"$shrink" --plugin-path "$plugins/seed_examples" check my_pruner --sparsity 0.75 2>/dev/null \
  | grep -q 'keeps 0.25' || fail "check my_pruner"
"$shrink" --plugin-path "$plugins/throwing" check throwing >/dev/null 2>"$tmp/err" && fail "throwing check exited 0"
grep -q 'deliberate failure in quantize_weight' "$tmp/err" || fail "throwing message: $(cat "$tmp/err")"
[ "$(grep -c 'error' "$tmp/err")" -eq 1 ] || fail "expected one error line: $(cat "$tmp/err")"

if [ "$failures" -eq 0 ]; then echo "cli tests: all passed"; fi
exit "$failures"
