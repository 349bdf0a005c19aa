#!/usr/bin/env bash
# Builds mrepo and mrepo-bench in release mode and runs the benchmarks.
# Options go to mrepo-bench (see `mrepo-bench --help`), e.g. scripts/bench.sh --size minilm.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
swift build -c release --product mrepo
swift build -c release --product mrepo-bench
exec .build/release/mrepo-bench "$@"
