#!/usr/bin/env bash
# Compatibility test of the simulator with Huawei Cloud's official Python SDK: creates a
# throw-away virtualenv, installs the pinned SDK from PyPI, and runs sdk_compat.py against
# `imsreg simulate` (the binary is built first when missing).
#
# Usage: tests/sdk_compat/run.sh [path/to/imsreg]     (default: target/debug/imsreg)
set -euo pipefail
cd "$(dirname "$0")/../.."

SDK_VERSION=3.1.219
BIN="${1:-target/debug/imsreg}"
if [[ ! -x "$BIN" ]]; then
    cargo build --locked --bin imsreg
fi

VENV="$(mktemp -d "${TMPDIR:-/tmp}/imsreg-sdk-compat.XXXXXX")"
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "huaweicloudsdkcore==$SDK_VERSION" "huaweicloudsdkims==$SDK_VERSION"
"$VENV/bin/python" tests/sdk_compat/sdk_compat.py "$BIN"
