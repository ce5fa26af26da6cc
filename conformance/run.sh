#!/usr/bin/env bash
# The conformance suite: the official Azure SDK for Python (pinned in requirements.txt) drives
# `opennsg serve`. Builds the release binary, makes a virtualenv in target/conformance-venv with
# the pinned packages if it is missing, and runs pytest (with this script's arguments, e.g. one
# test file). See README.md here.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p opennsg --locked
export OPENNSG_BIN="${OPENNSG_BIN:-${CARGO_TARGET_DIR:-target}/release/opennsg}"
venv="${CARGO_TARGET_DIR:-target}/conformance-venv"
if [ ! -x "$venv/bin/python" ] || ! cmp -s conformance/requirements.txt "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --no-input --disable-pip-version-check -q -r conformance/requirements.txt
    cp conformance/requirements.txt "$venv/requirements.txt"
fi
status=0
"$venv/bin/python" -m pytest -q "${@:-conformance}" || status=$?
if [ "$status" -eq 5 ]; then
    echo "conformance: no tests were collected" >&2
fi
exit "$status"
