#!/usr/bin/env bash
# Regenerates the method catalogue embedded in docs/merging.md (between the methods markers) from
# `mrepo merge --list-methods --markdown`; a test checks that the two agree.
set -euo pipefail
cd "$(dirname "$0")/.."
mrepo=${MREPO:-.build/debug/mrepo}
[ -x "$mrepo" ] || swift build -q --product mrepo
python3 - "$mrepo" <<'PY'
import subprocess, sys
generated = subprocess.run([sys.argv[1], "merge", "--list-methods", "--markdown"], check=True, capture_output=True, text=True).stdout
doc = open("docs/merging.md").read()
begin, end = "<!-- methods:begin -->\n", "<!-- methods:end -->"
a, b = doc.index(begin) + len(begin), doc.index(end)
open("docs/merging.md", "w").write(doc[:a] + generated + doc[b:])
PY
