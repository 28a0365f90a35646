#!/usr/bin/env bash
# imsreg's metrics file (--metrics-file) checked with the official Prometheus Python client's
# text parser: creates a throw-away virtualenv, installs the pinned prometheus-client from
# PyPI, and runs metrics_check.py, which runs examples/demo.yaml (simulated, then against an
# `imsreg simulate` that errs and throttles) and compares the parsed metrics with the JSON
# report (the binary is built first when missing).
#
# Usage: tests/metrics_check.sh [path/to/imsreg]     (default: target/debug/imsreg)
set -euo pipefail
cd "$(dirname "$0")/.."

PROMETHEUS_CLIENT_VERSION=0.26.0
BIN="${1:-target/debug/imsreg}"
if [[ ! -x "$BIN" ]]; then
    cargo build --locked --bin imsreg
fi

VENV="$(mktemp -d "${TMPDIR:-/tmp}/imsreg-metrics-check.XXXXXX")"
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "prometheus-client==$PROMETHEUS_CLIENT_VERSION"
"$VENV/bin/python" tests/metrics_check.py "$BIN"
