#!/usr/bin/env bash
# Optional (not in CI): loads a model served by `mrepo serve` with transformers' from_pretrained, by branch,
# tag and commit, and compares its weights with `mrepo export` of the same revision.
#   TRANSFORMERS_VENV  a venv with transformers and torch (default ~/.cache/mergekit-venv)
#   MREPO              the mrepo binary (default .build/debug/mrepo)
# Works in a temporary folder; only 127.0.0.1 is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TRANSFORMERS_VENV:-$HOME/.cache/mergekit-venv}"
mrepo="$(realpath "${MREPO:-.build/debug/mrepo}")"
[ -x "$venv/bin/python" ] || { echo "no Python in $venv (set TRANSFORMERS_VENV to a venv with transformers and torch)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
"$mrepo" synth family --size tiny >/dev/null
mkdir -p served/team
"$mrepo" init -q served/team/tiny
(cd served/team/tiny && "$mrepo" commit -q --from ../../../family/base -m base && "$mrepo" tag v1 \
  && "$mrepo" switch -q -c math && "$mrepo" commit -q --from ../../../family/math -m math)
commit="$("$mrepo" -C served/team/tiny log -n 1 --json math | grep -o '[0-9a-f]\{64\}' | head -1)"
"$mrepo" -C served/team/tiny export math "$work/exp-math" >/dev/null
"$mrepo" -C served/team/tiny export v1 "$work/exp-v1" >/dev/null
"$mrepo" serve served --port 0 > serve.log &
server=$!
until grep -q "listening on" serve.log; do sleep 0.2; done
endpoint="$(grep -o 'http://127.0.0.1:[0-9]*' serve.log)"
HF_ENDPOINT="$endpoint" HF_HUB_DISABLE_TELEMETRY=1 HF_HOME="$work/hf" "$venv/bin/python" - "$work" "${commit:0:40}" <<'PY'
import sys, torch
from safetensors.torch import load_file
from transformers import AutoModel
work, commit = sys.argv[1], sys.argv[2]
for revision, export in [("math", "exp-math"), ("v1", "exp-v1"), (commit, "exp-math")]:
    model = AutoModel.from_pretrained("team/tiny", revision=revision)
    want = load_file(f"{work}/{export}/model.safetensors")
    got = model.state_dict()
    # Every parameter transformers loaded equals the exported tensor of the same name (buffers such as
    # position_ids are not loaded from the file).
    loaded = {n: g for n, g in got.items() if any(n.endswith(k.split(".", 1)[-1]) for k in want)}
    same = sum(1 for n, g in loaded.items() if any(n.endswith(k.split(".", 1)[-1]) and torch.equal(g, v) for k, v in want.items()))
    assert loaded and same == len(loaded), f"{revision}: {same} of {len(loaded)} loaded tensors equal the export"
    print(f"from_pretrained revision={revision}: {same} tensors equal mrepo export")
PY
