#!/usr/bin/env python3
"""framework/ is layered (framework/README.md): a file may include its own layer and the layers
below it, never one above or a sibling. Checks every #include of framework/include and
framework/src against the table, and that src/ mirrors include/shrink/ folder for folder."""
import pathlib
import re
import sys

# Each layer and the layers it may include (besides itself). The SDK's headers are below all.
ALLOWED = {
    "core": set(),
    "config": {"core"},
    "dist": {"core"},
    "host": {"core", "dist"},
    "data": {"core", "config"},
    "graph": {"core", "config", "host", "dist"},
    "prune": {"core", "config", "host", "dist", "graph"},
    "export": {"core", "config", "host", "dist", "graph"},
    "run": {"core", "config", "host", "dist", "data", "graph", "prune", "export"},
}
INCLUDE = re.compile(r'#include\s+[<"](?:shrink/)?([a-z_]+)/[^>"]+[>"]')

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".") / "framework"
problems = []
for base in (root / "include" / "shrink", root / "src"):
    for path in sorted(base.rglob("*")):
        if path.suffix not in (".hpp", ".cpp", ".h"):
            continue
        rel = path.relative_to(base)
        if len(rel.parts) < 2 or rel.parts[0] not in ALLOWED:
            problems.append(f"{path}: not in a layer folder ({', '.join(ALLOWED)})")
            continue
        layer = rel.parts[0]
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = INCLUDE.match(line.strip())
            if not m or m.group(1) not in ALLOWED:
                continue
            used = m.group(1)
            if used != layer and used not in ALLOWED[layer]:
                problems.append(f"{path}:{number}: {layer}/ includes {used}/ ({line.strip()}); "
                                f"{layer}/ may include {', '.join(sorted(ALLOWED[layer])) or 'nothing'} of the framework")
folders = lambda base: {p.name for p in base.iterdir() if p.is_dir()}
if folders(root / "include" / "shrink") != folders(root / "src"):
    problems.append(f"{root}/src and {root}/include/shrink do not mirror each other: "
                    f"{sorted(folders(root / 'src'))} vs {sorted(folders(root / 'include' / 'shrink'))}")
for p in problems:
    print(p)
print(f"layers: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
