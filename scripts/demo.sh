#!/usr/bin/env bash
# Sets everything up and runs the demo on a small model family that mrepo generates itself
# (no downloads): a base and three fine-tunes of a BERT-shaped checkpoint, committed on branches.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== building mrepo (release; the first build takes a few minutes)"
swift build -c release --product mrepo 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]' || true
M="$PWD/.build/release/mrepo"
[ -x "$M" ] || { echo "demo: build failed" >&2; exit 1; }
export MREPO_AUTHOR="mrepo demo <demo@example.com>"

rm -rf demo && mkdir demo && cd demo
step() { printf '\n== %s\n' "$*"; }

step "generate a model family: base + math, code (light fine-tunes) + chat (heavy fine-tune)"
"$M" synth family --size small

step "mrepo init; commit the base on main; each fine-tune on its own branch"
"$M" init repo
cd repo
"$M" commit --from ../family/base -m "base: synthetic BERT-small" --metric eval_loss=2.31
"$M" tag v0-base
loss=(math=1.92 code=1.97 chat=1.74)
for entry in "${loss[@]}"; do
  ft=${entry%%=*}
  "$M" switch -q -c "$ft" main
  "$M" commit --from "../family/$ft" -m "$ft fine-tune" --metric "eval_loss=${entry#*=}"
done
"$M" switch -q main

step "mrepo log --oneline math code chat"
"$M" log --oneline math code chat

step "mrepo show chat"
"$M" show chat

step "mrepo diff math code   (per tensor; cos = cosine of the two task vectors against their merge base)"
diff_out=$("$M" diff math code)
printf '%s\n' "$diff_out" | head -n 14
echo "..."
printf '%s\n' "$diff_out" | tail -n 1

step "mrepo du   (logical vs stored bytes)"
"$M" du

step "mrepo merge math code chat --method ties   (an octopus merge from the base, with its conflict report)"
"$M" switch -q -c merged main
"$M" merge math code chat --method ties --set density=0.5 --report ../merge-report.html
echo "(the HTML report with its heatmap is in $(cd .. && pwd)/merge-report.html)"

step "mrepo show merged   (the recipe and the class counts are recorded in the merge commit)"
show_out=$("$M" show merged)
printf '%s\n' "$show_out" | sed -n '1,16p'
"$M" switch -q main

step "LoRA adapters: three PEFT adapters of the base (lora_A/lora_B of query and value, r = 8), each on its own branch"
"$M" synth ../family --size small --adapters 3 --adapters-only
for a in lora-math lora-code lora-chat; do
  "$M" switch -q -c "$a" main
  "$M" commit --from "../family/$a" -m "$a adapter"
done

step "mrepo diff lora-math lora-code   (per adapted module, from the factors: ‖ΔW‖, cosine, effective rank)"
adiff=$("$M" diff lora-math lora-code)
printf '%s\n' "$adiff" | head -n 6
echo "..."
printf '%s\n' "$adiff" | tail -n 1

step "mrepo merge lora-math lora-code lora-chat --method rmm --basis 1   (reversible: a basis of 1, approximate)"
"$M" switch -q -c rmm-k1 main
"$M" merge lora-math lora-code lora-chat --method rmm --basis 1

step "mrepo merge ... --method rmm --basis 2   (K = N − 1: every expert is rebuilt exactly)"
"$M" switch -q -c rmm main
"$M" merge lora-math lora-code lora-chat --method rmm --basis 2 --set baselines=false

step "mrepo checkout rmm --expert lora-code   (revert one expert from the merge commit)"
"$M" checkout rmm --expert lora-code
"$M" status
echo "-- the rebuilt expert against the committed one (mrepo diff lora-code: committed → working tree):"
"$M" diff lora-code | tail -n 3

step "mrepo export rmm ../lora-code-folded --expert lora-code --fold   (the dense model θ_base + ΔW)"
"$M" export rmm ../lora-code-folded --expert lora-code --fold
"$M" switch -q main

step "mrepo export chat ../chat-export   (byte for byte)"
"$M" export chat ../chat-export
cmp ../family/chat/model.safetensors ../chat-export/model.safetensors && echo "model.safetensors is identical to the committed file"

step "mrepo fsck"
"$M" fsck
printf '\nThe demo repository is in %s\n' "$PWD"
