#!/usr/bin/env bash
# Every C and C++ file of the project is formatted as .clang-format says (clang-format 14).
# To mend: clang-format -i $(the files this lists).
set -euo pipefail
root=${1:-.}
cd "$root"
mapfile -t files < <(find framework sdk tools plugins tests bench docs/examples \
  -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.c' \) | sort)
[ "${#files[@]}" -gt 50 ] || { echo "format: only ${#files[@]} files found under $root"; exit 1; }
bad=()
for f in "${files[@]}"; do
  clang-format --style=file --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
for f in "${bad[@]}"; do echo "not clang-formatted: $f"; done
echo "format: ${#files[@]} files, ${#bad[@]} not formatted"
[ "${#bad[@]}" -eq 0 ]
