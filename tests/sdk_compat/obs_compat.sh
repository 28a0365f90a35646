#!/usr/bin/env bash
# Compatibility test of the simulator's OBS side with Huawei's official OBS Python SDK: creates
# a throw-away virtualenv, installs the pinned esdk-obs-python from PyPI, and runs obs_compat.py
# (HEAD bucket and object, ranged GETs, refusals) against `imsreg simulate` on 127.0.0.1 (the
# binary is built first when missing).
#
# Usage: tests/sdk_compat/obs_compat.sh [path/to/imsreg]     (default: target/debug/imsreg)
set -euo pipefail
cd "$(dirname "$0")/../.."

SDK_VERSION=3.26.6
BIN="${1:-target/debug/imsreg}"
if [[ ! -x "$BIN" ]]; then
    cargo build --locked --bin imsreg
fi

VENV="$(mktemp -d "${TMPDIR:-/tmp}/imsreg-obs-compat.XXXXXX")"
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "esdk-obs-python==$SDK_VERSION"
"$VENV/bin/python" tests/sdk_compat/obs_compat.py "$BIN"
