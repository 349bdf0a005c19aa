#!/usr/bin/env bash
# Checks that two mrepo binaries make the same reversible merges, bit for bit: for a seeded synth
# family (adapters of rank 4 and 2, full fine-tunes), both run the same rmm merges (every variant,
# centred or not, view rank and λ, baselines on and off) in copies of one repository, and the
# script compares each merge's tree id and `extra` members, `mrepo experts`, and every export
# (--expert, --view ta|ta-full|mean, --fold). Commit ids differ only by their timestamps, so equal
# trees mean equal commits. Use it before and after a refactoring of RMM:
#
#   scripts/rmm-identity.sh /path/to/old/mrepo .build/debug/mrepo
#
# Not run in CI (it needs two builds); prints "identical" or the differing lines and exits 1.
set -euo pipefail
OLD=$(realpath "$1"); NEW=$(realpath "$2")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

setup() {  # binary, dir
  local M=$1
  mkdir -p "$2"; cd "$2"
  $M synth fam --size tiny --adapters 3 --lora-rank 4 >/dev/null
  $M synth fam2 --size tiny --adapters 1 --lora-rank 2 >/dev/null
  $M init -q repo; cd repo
  $M commit -q --from ../fam/base -m base
  for n in math code chat; do
    $M switch -q -c lora-$n main; $M commit -q --from ../fam/lora-$n -m "lora $n"
    $M switch -q -c ft-$n main; $M commit -q --from ../fam/$n -m "ft $n"
  done
  $M switch -q -c lora2-math main; $M commit -q --from ../fam2/lora-math -m "lora2 math"
  $M switch -q main
}

run() {  # binary, repository
  local M=$1 i=0 ex1 ex2
  cd "$2"
  scenario() {  # name, merge arguments...
    local name=$1 head; shift
    i=$((i + 1))
    $M switch -q -c s$i main
    if ! out=$($M merge -q "$@" 2>&1); then echo "$name: merge failed: $out"; $M switch -q main; return; fi
    $M log --json -n 1 | python3 -c 'import json,sys; c=json.load(sys.stdin)[0]; e=c["extra"]; e.pop("merge",None); print(c["tree"], json.dumps(e,sort_keys=True))' | sed "s/^/$name: /"
    head=$($M log --json -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
    $M experts --json HEAD 2>&1 | sed "s/$head/HEAD/g; s/${head:0:12}/HEAD/g" | sha256sum | sed "s/^/$name experts --json: /"
    $M experts HEAD 2>&1 | sed "s/$head/HEAD/g; s/${head:0:12}/HEAD/g" | sha256sum | sed "s/^/$name experts: /"
    for what in "--view mean" "--view ta-full" "--view ta" "--expert $ex1" "--expert $ex2" "--view mean --fold" "--expert $ex1 --fold" "--fold"; do
      rm -rf "$WORK/x"
      # shellcheck disable=SC2086
      if o=$($M export -q HEAD "$WORK/x" $what 2>&1); then
        echo "$name export $what: $(cd "$WORK/x" && find . -type f | sort | xargs sha256sum | sha256sum)"
      else
        echo "$name export $what: error: ${o//${head:0:12}/HEAD}"
      fi
    done
    $M switch -q main
  }
  local L="lora-math lora-code lora-chat" F="ft-math ft-code ft-chat"
  ex1=lora-math; ex2=lora-chat
  scenario A-position-k2 $L --method rmm --basis 2
  scenario A-layer-k1 $L --method rmm --basis 1 --set variant=layer --set view_rank=2 --set view_lambda=0.5
  scenario A-dense-k2-uncentred $L --method rmm --basis 2 --set variant=dense --set center=false
  scenario A-position-k1-nobaselines $L --method rmm --basis 1 --set baselines=false
  scenario A-mixed-ranks lora-math lora-code lora2-math --method rmm --basis 2
  ex1=ft-math; ex2=ft-chat
  scenario F-position-k2 $F --method rmm --basis 2 --set rank=4
  scenario F-dense-k2 $F --method rmm --basis 2 --set variant=dense
  scenario F-layer-k1 $F --method rmm --basis 1 --set variant=layer --set rank=2 --set view_rank=3 --set view_lambda=0.7
  scenario F-position-k1-uncentred $F --method rmm --basis 1 --set rank=3 --set center=false
}

(setup "$OLD" "$WORK/base")
cp -a "$WORK/base" "$WORK/old"; cp -a "$WORK/base" "$WORK/new"
(run "$OLD" "$WORK/old/repo") > "$WORK/old.txt" 2>&1
(run "$NEW" "$WORK/new/repo") > "$WORK/new.txt" 2>&1
if diff "$WORK/old.txt" "$WORK/new.txt"; then
  echo "identical: $(grep -c . "$WORK/old.txt") lines over $(grep -c '^[^ ]*: [0-9a-f]\{64\} ' "$WORK/old.txt") merges"
else
  exit 1
fi
