#!/usr/bin/env bash
# Checks the deployment examples: the Kubernetes files with kubernetes-validate (the API's
# OpenAPI schemas, strict: unknown fields are errors) plus tests/examples_check.py (the Job
# rules the API server applies beyond the schema, e.g. podFailurePolicy exit codes), and the CI
# files with check-jsonschema's bundled GitLab CI and GitHub workflow schemas. Both tools come
# from PyPI, pinned, into a throw-away virtualenv; they ship their schemas (no other network).
#
# Usage: tests/examples_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0

VENV="$(mktemp -d "${TMPDIR:-/tmp}/imsreg-examples.XXXXXX")"
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"

k8s=(examples/k8s-*.yaml)
gitlab=(examples/gitlab-ci*.yml)
github=(examples/github-actions*.yml)

"$VENV/bin/kubernetes-validate" --strict --quiet "${k8s[@]}"
"$VENV/bin/python" tests/examples_check.py "${k8s[@]}"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.gitlab-ci "${gitlab[@]}"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${github[@]}"
echo "examples_check: ${#k8s[@]} Kubernetes, ${#gitlab[@]} GitLab CI and ${#github[@]} GitHub Actions file(s) valid"
