#!/usr/bin/env bash
# The Azure SDK for JavaScript (@azure/arm-network, pinned in conformance/js/package-lock.json)
# against `opennsg serve` over HTTPS with a self-signed certificate, trusted the way a user would
# (NODE_EXTRA_CA_CERTS). Builds the release binary, installs the SDK with `npm ci` on first run,
# starts the server on a free port and stops it whatever happens. Needs node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p opennsg
opennsg="$(realpath "${OPENNSG_BIN:-${CARGO_TARGET_DIR:-target}/release/opennsg}")"
if [ ! -d conformance/js/node_modules/@azure/arm-network ]; then
    (cd conformance/js && npm ci --no-audit --no-fund)
fi

. conformance/https_server.sh

export NODE_EXTRA_CA_CERTS="$work/data/cert.pem"
export OPENNSG_URL="https://127.0.0.1:$port"
export OPENNSG_TOKEN="$token"
export OPENNSG_SUBSCRIPTION="00000000-0000-0000-0000-000000000001"
export OPENNSG_SERVICE_TAGS="$service_tags"
if ! (cd conformance/js && timeout 600 npm test); then
    echo "js: the server's log (last lines):" >&2
    tail -30 "$work/server.log" >&2
    exit 1
fi
