#!/usr/bin/env bash
# Builds mrepo-fuzz in release mode and fuzzes every target (or the ones named) for a fixed number
# of iterations each, one process per target, so a crash in one target does not hide the others.
#
#   scripts/fuzz.sh                          # every target, 100000 iterations, seed 1
#   FUZZ_ITERATIONS=1000000 FUZZ_SEED=7 scripts/fuzz.sh object recipe
#
# Inputs that crash, hang or fail an invariant are saved under $FUZZ_ARTIFACTS
# (default .fuzz/<date>-seed<seed>); replay one with
#   .build/release/mrepo-fuzz replay TARGET FILE
# Exit status: 0 when every target ran clean, 1 otherwise. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

iterations=${FUZZ_ITERATIONS:-100000}
seed=${FUZZ_SEED:-1}
artifacts=${FUZZ_ARTIFACTS:-.fuzz/$(date +%Y%m%d-%H%M%S)-seed$seed}
memory=${FUZZ_MEMORY_LIMIT_MB:-4096}
hang=${FUZZ_HANG_SECONDS:-10}

swift build -c release --product mrepo-fuzz
fuzz=.build/release/mrepo-fuzz
mkdir -p "$artifacts"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <("$fuzz" list | awk '{print $1}')
fi

echo "mrepo-fuzz: ${#targets[@]} targets × $iterations iterations, seed $seed, artifacts in $artifacts"
failed=()
for target in "${targets[@]}"; do
    status=0
    "$fuzz" run "$target" --iterations "$iterations" --seed "$seed" --artifacts "$artifacts" \
        --corpus Tests/Fuzz/corpus --memory-limit-mb "$memory" --hang-seconds "$hang" || status=$?
    case $status in
        0) ;;
        1) failed+=("$target (findings)") ;;
        3) failed+=("$target (hang)") ;;
        *) failed+=("$target (crash, status $status)") ;;
    esac
done

if [ ${#failed[@]} -eq 0 ]; then
    echo "mrepo-fuzz: 0 crashes, 0 hangs, 0 findings"
    rmdir "$artifacts" 2>/dev/null || true
else
    echo "mrepo-fuzz: FAILED: ${failed[*]}; inputs in $artifacts"
    exit 1
fi
