#!/usr/bin/env bash
# Installs Azurite, the Azure Storage emulator the nsg-flow-store tests start, into
# ${CARGO_TARGET_DIR:-target}/azurite, pinned with its dependencies by azurite/package-lock.json
# (`npm ci`; nothing is done when that lock is installed already). The tests find it there, or
# wherever $OPENNSG_AZURITE (the azurite-blob program) points. Needs node and npm.
set -euo pipefail
crate="$(cd "$(dirname "$0")" && pwd)"
cd "$crate/../.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}/azurite")"
if ! cmp -s "$crate/azurite/package-lock.json" "$target/package-lock.json" \
    || [ ! -x "$target/node_modules/.bin/azurite-blob" ]; then
    mkdir -p "$target"
    cp "$crate/azurite/package.json" "$crate/azurite/package-lock.json" "$target/"
    (cd "$target" && npm ci --no-audit --no-fund)
fi
echo "azurite $(node -p 'require(process.argv[1]).version' "$target/node_modules/azurite/package.json"): $target/node_modules/.bin/azurite-blob"
