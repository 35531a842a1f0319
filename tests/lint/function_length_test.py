#!/usr/bin/env python3
"""No function in framework/, tools/ or sdk/ is longer than 100 lines (the habit is under 60).

A small scanner, not a parser: it strips comments and string literals (raw ones too), follows the
braces, and takes a brace that opens after a `)` at namespace or class level as a function body.
Prints the longest functions; fails on any over the limit."""
import pathlib
import re
import sys

LIMIT = 100
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
files = [p for d in ("framework", "tools", "sdk") for p in (root / d).rglob("*")
         if p.suffix in (".cpp", ".hpp", ".h", ".c")]

RAW = re.compile(r'R"([^(\s]*)\((.*?)\)\1"', re.S)
TEXT = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def blank(m):
    return re.sub(r"[^\n]", " ", m.group(0))


def functions(text):
    """(first line, last line, signature) of each function body at namespace or class level."""
    text = TEXT.sub(blank, RAW.sub(blank, text))
    stack = []  # per open brace: "function", "scope" (namespace, class, ...), "inner"
    start = 0
    line = 1
    for i, ch in enumerate(text):
        if ch == "\n":
            line += 1
        elif ch == "{":
            head = text[max(0, text.rfind(";", 0, i), text.rfind("}", 0, i), text.rfind("{", 0, i)) + 1:i]
            inside_function = any(kind != "scope" for kind in stack)
            is_scope = re.search(r"\b(namespace|class|struct|union|enum)\b[^()]*$", head) is not None
            is_function = (not inside_function and not is_scope and ")" in head
                           and re.search(r"=\s*$|\b(if|for|while|switch|catch)\s*\(", head) is None)
            if is_function:
                stack.append("function")
                start, signature = line, " ".join(head.split())
            else:
                stack.append("inner" if inside_function else "scope")
        elif ch == "}" and stack:
            if stack.pop() == "function":
                yield start, line, signature


results = []
for path in files:
    for first, last, signature in functions(path.read_text(errors="replace")):
        results.append((last - first + 1, f"{path.relative_to(root)}:{first}", signature[:90]))
results.sort(reverse=True)
for length, where, signature in results[:5]:
    print(f"{length:4d} lines  {where}  {signature}")
over = [r for r in results if r[0] > LIMIT]
for length, where, signature in over:
    print(f"over {LIMIT}: {where} ({length} lines): {signature}")
print(f"functions: {len(results)} scanned, {len(over)} over {LIMIT} lines")
sys.exit(1 if over else 0)
