#!/usr/bin/env bash
# Installs what the tests need, then runs the whole test suite (unit tests and end-to-end CLI tests).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
swift build --build-tests
swift test --skip-build "$@"
