#!/usr/bin/env bash
# Regenerates tests/data/obs-vectors.json with the official OBS Python SDK: creates a
# throw-away virtualenv, installs the pinned esdk-obs-python from PyPI and runs
# obs_vectors.py (a capture server on 127.0.0.1 plus the SDK's own signer; no other network).
# The vectors are committed; tests/obs_signer_vectors.rs reproduces every one.
#
# Usage: tests/sdk_compat/obs_vectors.sh [output.json]   (default: tests/data/obs-vectors.json)
set -euo pipefail
cd "$(dirname "$0")/../.."

SDK_VERSION=3.26.6
OUT="${1:-tests/data/obs-vectors.json}"

VENV="$(mktemp -d "${TMPDIR:-/tmp}/imsreg-obs-vectors.XXXXXX")"
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "esdk-obs-python==$SDK_VERSION"
"$VENV/bin/python" tests/sdk_compat/obs_vectors.py "$OUT"
