#!/usr/bin/env bash
# NOT RUN IN CI. Compares mrepo's merges with the real mergekit on real checkpoints
# (scripts/mergekit_parity.py; its docstring says what it does and what it needs).
#   MERGEKIT_VENV   a venv with mergekit 0.1.5, torch, numpy, safetensors (default ~/.cache/mergekit-venv)
# Options go to the script, e.g.
#   scripts/mergekit-parity.sh --mrepo .build/debug/mrepo --json /tmp/parity.json [--only ties_three] [--keep]
set -euo pipefail
venv="${MERGEKIT_VENV:-$HOME/.cache/mergekit-venv}"
[ -x "$venv/bin/python" ] || { echo "no Python in $venv (set MERGEKIT_VENV to a venv with mergekit)" >&2; exit 2; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$venv/bin/python" "$(dirname "$0")/mergekit_parity.py" "$@"
